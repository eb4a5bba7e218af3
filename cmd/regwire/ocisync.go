package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/ocidir"
)

// ociPrefix marks an OCI image layout directory on either side of regwire sync, as skopeo
// and oras name it: oci:PATH (the directory as a whole: repositories keep their paths) or
// oci:PATH:REPOSITORY (one repository in it).
const ociPrefix = "oci:"

// ociSide is a directory standing in for a registry during one run.
type ociSide struct {
	dir *ocidir.Dir
	srv *ocidir.Server
}

// parseOCI splits oci:PATH[:REPOSITORY]; ok is false for a registry reference.
func parseOCI(arg string) (path, repo string, ok bool) {
	rest, ok := strings.CutPrefix(arg, ociPrefix)
	if !ok {
		return "", "", false
	}
	if i := strings.LastIndex(rest, ":"); i > 0 && !strings.Contains(rest[i+1:], "/.") && rest[i+1:] != "" && !strings.HasPrefix(rest[i+1:], "/") {
		return rest[:i], rest[i+1:], true
	}
	return rest, "", true
}

// openOCI opens (creating it when missing) and serves the directory of an oci: argument.
func openOCI(path string) (*ociSide, error) {
	if path == "" {
		return nil, errors.New("oci: names no directory; write oci:/path/to/dir")
	}
	dir, err := ocidir.Open(path)
	if err != nil {
		return nil, fmt.Errorf("oci:%s: %w", path, err)
	}
	srv, err := ocidir.Serve(dir)
	if err != nil {
		return nil, err
	}
	return &ociSide{dir: dir, srv: srv}, nil
}

// repoPath is a reference's repository path without its registry host
// (registry.example/team/app → team/app; a registry alone → "").
func repoPath(ref string) string {
	host, p, found := strings.Cut(ref, "/")
	if !found {
		if strings.ContainsAny(host, ".:") || host == "localhost" {
			return ""
		}
		return "library/" + host // Docker Hub's short names
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return ref // docker.io without its host: library/busybox, org/app
	}
	return p
}

// resolveOCI turns oci: arguments of regwire sync into the loopback registry that serves
// their directory: the target keeps the source's repository path unless it names one; a
// source directory as a whole needs --prefix. close stops the servers; done, after a run
// that wrote to a directory, writes its SHA256SUMS.
func resolveOCI(src, dst string, prefix bool, out io.Writer) (newSrc, newDst string, done func() error, closeAll func(), err error) {
	var sides []*ociSide
	closeAll = func() {
		for _, s := range sides {
			_ = s.srv.Close()
		}
	}
	done = func() error { return nil }
	newSrc, newDst = src, dst
	if path, repo, ok := parseOCI(src); ok {
		side, err := openOCI(path)
		if err != nil {
			return "", "", nil, closeAll, err
		}
		sides = append(sides, side)
		switch {
		case repo != "":
			newSrc = side.srv.Host + "/" + repo
		case prefix:
			newSrc = side.srv.Host
		default:
			return "", "", nil, closeAll, fmt.Errorf("%s holds many repositories: name one (oci:%s:library/busybox) or copy them all with --prefix", src, path)
		}
	}
	if path, repo, ok := parseOCI(dst); ok {
		side, err := openOCI(path)
		if err != nil {
			return "", "", nil, closeAll, err
		}
		sides = append(sides, side)
		if repo == "" {
			repo = repoPath(src)
			if _, srcRepo, isOCI := parseOCI(src); isOCI {
				repo = srcRepo
			}
		}
		newDst = strings.TrimSuffix(side.srv.Host+"/"+repo, "/")
		done = func() error {
			if err := side.dir.WriteChecksums(); err != nil {
				return fmt.Errorf("writing %s: %w", ocidir.Checksums, err)
			}
			fmt.Fprintf(out, "wrote %s with %s\n", path, ocidir.Checksums)
			return nil
		}
	}
	return newSrc, newDst, done, closeAll, nil
}

// runSyncFileToDir runs a file's ImageSyncs into one directory (--to oci:PATH): each
// under its target's repository path, so that the other side pushes the directory with
// --prefix into the registry the targets name.
func runSyncFileToDir(cmd *cobra.Command, syncs []fileSync, f syncFlags) error {
	path, repo, ok := parseOCI(f.to)
	if !ok || repo != "" {
		return usage(fmt.Errorf("--to %q: want oci:PATH, a directory", f.to))
	}
	side, err := openOCI(path)
	if err != nil {
		return usage(err)
	}
	defer func() { _ = side.srv.Close() }()
	for i := range syncs {
		syncs[i].dst = imagecopy.Endpoint{Repository: side.srv.Host + "/" + repoPath(syncs[i].dst.Repository)}
	}
	f.noBlobCache = true
	// The directory gets its checksums for what it holds, whatever failed.
	err = runSyncFile(cmd.Context(), cmd.OutOrStdout(), syncs, f)
	if werr := side.dir.WriteChecksums(); werr != nil {
		return errors.Join(err, fmt.Errorf("writing %s: %w", ocidir.Checksums, werr))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s with %s\n", path, ocidir.Checksums)
	return err
}
