package ocidir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxManifest bounds a manifest put into the directory (the distribution spec's 4 MiB).
const maxManifest = 4 << 20

// Server serves a Dir over the registry API on a loopback port, for one process's copies:
// the repositories are the repository parts of index.json's names, the catalog lists them,
// blobs are checked against their digests as they are read and written, and OCI 1.1
// referrers are answered from the manifests index.json lists without a name.
type Server struct {
	dir *Dir
	srv *http.Server
	// Host is 127.0.0.1:<port>, as image references name it.
	Host string

	mu      sync.Mutex
	uploads map[string]*os.File
}

// Serve starts serving dir; Close stops it.
func Serve(dir *Dir) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, Host: ln.Addr().String(), uploads: map[string]*os.File{}}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: time.Minute}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server, closing its connections (the copies have ended: what is left
// are idle ones and those the client opened ahead), and drops unfinished uploads.
func (s *Server) Close() error {
	err := s.srv.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, f := range s.uploads {
		_ = f.Close()
		_ = os.Remove(f.Name())
		delete(s.uploads, id)
	}
	return err
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// ServeHTTP answers the registry API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := r.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	case p == "/v2/_catalog":
		s.catalog(w)
	case strings.HasSuffix(p, "/tags/list"):
		s.tags(w, strings.TrimSuffix(strings.TrimPrefix(p, "/v2/"), "/tags/list"))
	default:
		for _, kind := range []string{"/manifests/", "/blobs/uploads/", "/blobs/", "/referrers/"} {
			if i := strings.LastIndex(p, kind); i > len("/v2") {
				name, ref := strings.TrimPrefix(p[:i], "/v2/"), p[i+len(kind):]
				switch kind {
				case "/manifests/":
					s.manifest(w, r, name, ref)
				case "/blobs/uploads/":
					s.upload(w, r, name, ref)
				case "/blobs/":
					s.blob(w, r, ref)
				default:
					s.referrers(w, ref)
				}
				return
			}
		}
		apiError(w, http.StatusNotFound, "NOT_FOUND", "not found")
	}
}

func (s *Server) catalog(w http.ResponseWriter) {
	tags, err := s.dir.Tags()
	if err != nil {
		apiError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	var repos []string
	for _, t := range tags {
		repos = append(repos, t.Repository)
	}
	slices.Sort(repos)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"repositories": slices.Compact(repos)})
}

func (s *Server) tags(w http.ResponseWriter, name string) {
	tags, err := s.dir.Tags()
	if err != nil {
		apiError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	var out []string
	for _, t := range tags {
		if t.Repository == name {
			out = append(out, t.Tag)
		}
	}
	if out == nil {
		apiError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"name": name, "tags": out})
}

// find resolves a manifest reference of a repository to its descriptor.
func (s *Server) find(name, ref string) (v1.Descriptor, bool) {
	if d, err := v1.NewHash(ref); err == nil {
		size, ok := s.dir.Stat(d)
		return v1.Descriptor{Digest: d, Size: size}, ok
	}
	tags, err := s.dir.Tags()
	if err != nil {
		return v1.Descriptor{}, false
	}
	for _, t := range tags {
		if t.Repository == name && t.Tag == ref {
			return t.Descriptor, true
		}
	}
	return v1.Descriptor{}, false
}

// mediaTypeOf reads a manifest's media type from its own mediaType field, else from its
// shape.
func mediaTypeOf(b []byte) types.MediaType {
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	_ = json.Unmarshal(b, &m)
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.Manifests != nil:
		return types.OCIImageIndex
	}
	return types.OCIManifestSchema1
}

func (s *Server) manifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		desc, ok := s.find(name, ref)
		if !ok {
			apiError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		b, err := s.dir.ReadBlob(desc.Digest)
		if err != nil {
			s.readFailed(w, err)
			return
		}
		w.Header().Set("Content-Type", string(mediaTypeOf(b)))
		w.Header().Set("Docker-Content-Digest", desc.Digest.String())
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	case http.MethodPut:
		b, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
		if err != nil || len(b) > maxManifest {
			apiError(w, http.StatusBadRequest, "MANIFEST_INVALID", "manifest too large or unreadable")
			return
		}
		d, _, _ := v1.SHA256(bytes.NewReader(b))
		if want, err := v1.NewHash(ref); err == nil && want != d {
			apiError(w, http.StatusBadRequest, "DIGEST_INVALID", "the manifest does not match its digest")
			return
		}
		if _, err := s.dir.WriteBlob(d, bytes.NewReader(b)); err != nil {
			apiError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
			return
		}
		mt := types.MediaType(r.Header.Get("Content-Type"))
		if mt == "" {
			mt = mediaTypeOf(b)
		}
		desc := v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
		tagged := ref != d.String()
		var subject struct {
			Subject *v1.Descriptor `json:"subject"`
		}
		_ = json.Unmarshal(b, &subject)
		switch {
		case tagged:
			err = s.dir.AddManifest(desc, name+":"+ref)
		case subject.Subject != nil: // a referrer travels with its subject
			err = s.dir.AddManifest(desc, "")
		}
		if err != nil {
			apiError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
			return
		}
		if subject.Subject != nil {
			w.Header().Set("OCI-Subject", subject.Subject.Digest.String())
		}
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Location", "/v2/"+name+"/manifests/"+d.String())
		w.WriteHeader(http.StatusCreated)
	default:
		apiError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the directory deletes nothing")
	}
}

// readFailed answers a blob or manifest the directory cannot give: a corrupt one names
// its file (400, so that no client retries what cannot change).
func (s *Server) readFailed(w http.ResponseWriter, err error) {
	var ce *CorruptError
	if errors.As(err, &ce) {
		apiError(w, http.StatusBadRequest, "DIGEST_INVALID", ce.Error())
		return
	}
	apiError(w, http.StatusNotFound, "BLOB_UNKNOWN", err.Error())
}

func (s *Server) blob(w http.ResponseWriter, r *http.Request, ref string) {
	d, err := v1.NewHash(ref)
	if err != nil {
		apiError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	size, ok := s.dir.Stat(d)
	if !ok {
		apiError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Type", "application/octet-stream")
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		return
	}
	// Checked whole before it is sent: a corrupt blob is an answer naming its file, not a
	// transfer that breaks off at its end.
	rc, _, err := s.dir.OpenBlob(d)
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		_ = rc.Close()
	}
	if err != nil {
		s.readFailed(w, err)
		return
	}
	f, err := os.Open(filepath.Join(s.dir.root, "blobs", "sha256", d.Hex))
	if err != nil {
		s.readFailed(w, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Length", fmt.Sprint(size))
	_, _ = io.Copy(w, f)
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request, name, id string) {
	if r.Method == http.MethodPost {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
		f, err := os.CreateTemp(filepath.Join(s.dir.root, "blobs", "sha256"), ".upload-*")
		if err != nil {
			apiError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
			return
		}
		s.mu.Lock()
		s.uploads[id] = f
		s.mu.Unlock()
		if d := r.URL.Query().Get("digest"); d != "" { // monolithic
			s.finish(w, r, name, id, d)
			return
		}
		w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
		w.Header().Set("Range", "0-0")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	s.mu.Lock()
	f, ok := s.uploads[id]
	s.mu.Unlock()
	if !ok {
		apiError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown")
		return
	}
	switch r.Method {
	case http.MethodPatch:
		if _, err := io.Copy(f, r.Body); err != nil {
			apiError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
			return
		}
		fi, _ := f.Stat()
		w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
		w.Header().Set("Range", fmt.Sprintf("0-%d", max(fi.Size()-1, 0)))
		w.WriteHeader(http.StatusAccepted)
	case http.MethodPut:
		s.finish(w, r, name, id, r.URL.Query().Get("digest"))
	case http.MethodDelete:
		s.drop(id)
		w.WriteHeader(http.StatusNoContent)
	default:
		apiError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
	}
}

// finish appends the request body to upload id and moves it into place as digest, once
// its content matches.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, name, id, digest string) {
	s.mu.Lock()
	f := s.uploads[id]
	s.mu.Unlock()
	defer s.drop(id)
	d, err := v1.NewHash(digest)
	if err != nil {
		apiError(w, http.StatusBadRequest, "DIGEST_INVALID", "digest: "+err.Error())
		return
	}
	if _, err := io.Copy(f, r.Body); err != nil {
		apiError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		apiError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	if _, err := s.dir.WriteBlob(d, f); err != nil {
		apiError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) drop(id string) {
	s.mu.Lock()
	f, ok := s.uploads[id]
	delete(s.uploads, id)
	s.mu.Unlock()
	if ok {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
}

// referrers answers the OCI 1.1 referrers API from the unnamed manifests of index.json.
func (s *Server) referrers(w http.ResponseWriter, ref string) {
	d, err := v1.NewHash(ref)
	if err != nil {
		apiError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	im, err := s.dir.Index()
	if err != nil {
		apiError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	out := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
	for _, m := range im.Manifests {
		if m.Annotations[RefName] != "" {
			continue
		}
		b, err := s.dir.ReadBlob(m.Digest)
		if err != nil {
			continue
		}
		var man struct {
			ArtifactType string            `json:"artifactType"`
			Config       v1.Descriptor     `json:"config"`
			Subject      *v1.Descriptor    `json:"subject"`
			Annotations  map[string]string `json:"annotations"`
		}
		if json.Unmarshal(b, &man) != nil || man.Subject == nil || man.Subject.Digest != d {
			continue
		}
		at := man.ArtifactType
		if at == "" {
			at = string(man.Config.MediaType)
		}
		out.Manifests = append(out.Manifests, v1.Descriptor{MediaType: mediaTypeOf(b), Digest: m.Digest, Size: m.Size,
			ArtifactType: at, Annotations: man.Annotations})
	}
	w.Header().Set("Content-Type", string(types.OCIImageIndex))
	_ = json.NewEncoder(w).Encode(out)
}
