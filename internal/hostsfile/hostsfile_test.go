package hostsfile_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/regwire/regwire/internal/hostsfile"
)

const debianHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n# custom\n10.0.0.9 build.local\n"

var nexus = []hostsfile.Entry{{IP: "127.0.0.1", Hostnames: []string{"nexus.local"}}}

func TestApply(t *testing.T) {
	t.Parallel()
	block := hostsfile.Begin + "\n127.0.0.1\tnexus.local\n" + hostsfile.End + "\n"
	cases := []struct {
		name    string
		content string
		entries []hostsfile.Entry
		want    string
	}{
		{"a block is appended to a file without one", debianHosts, nexus, debianHosts + block},
		{"an existing block is replaced where it stands", "a\n" + hostsfile.Begin + "\n1.2.3.4\told\n" + hostsfile.End + "\nz\n", nexus, "a\n" + block + "z\n"},
		{"no entries remove the block", debianHosts + block, nil, debianHosts},
		{"no entries and no block change nothing", debianHosts, nil, debianHosts},
		{"a file without a final newline gets one before the block", "127.0.0.1 localhost", nexus,
			"127.0.0.1 localhost\n" + hostsfile.BeginAfterUnterminated + "\n127.0.0.1\tnexus.local\n" + hostsfile.End + "\n"},
		{"an empty file gets just the block", "", nexus, block},
		{"IPv6 addresses are written canonically", "", []hostsfile.Entry{{IP: "fd00:0::1", Hostnames: []string{"a.local", "b.local"}}},
			hostsfile.Begin + "\nfd00::1\ta.local b.local\n" + hostsfile.End + "\n"},
		{"an owner is written as a trailing comment", "", []hostsfile.Entry{{IP: "10.0.0.1", Hostnames: []string{"a.local"}, Owner: "nexus"}},
			hostsfile.Begin + "\n10.0.0.1\ta.local\t# nexus\n" + hostsfile.End + "\n"},
		{"CRLF lines outside the block are kept", "127.0.0.1 localhost\r\n", nexus, "127.0.0.1 localhost\r\n" + block},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := hostsfile.Apply([]byte(tc.content), tc.entries)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}
}

func TestReadReturnsOwners(t *testing.T) {
	t.Parallel()
	with, err := hostsfile.Apply([]byte(debianHosts), []hostsfile.Entry{{IP: "10.0.0.1", Hostnames: []string{"a.local", "b.local"}, Owner: "nexus"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := hostsfile.Read(with)
	if err != nil || len(got) != 1 || got[0].Owner != "nexus" || len(got[0].Hostnames) != 2 {
		t.Errorf("Read = %+v, %v", got, err)
	}
}

func TestRemovingTheBlockRestoresTheFileExactly(t *testing.T) {
	t.Parallel()
	for _, original := range []string{debianHosts, "127.0.0.1 localhost", "", "x\r\ny"} {
		with, err := hostsfile.Apply([]byte(original), nexus)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := hostsfile.Read(with)
		if err != nil || len(entries) != 1 || entries[0].IP != "127.0.0.1" || entries[0].Hostnames[0] != "nexus.local" {
			t.Errorf("Read = %v, %v", entries, err)
		}
		without, err := hostsfile.Apply(with, nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(without) != original {
			t.Errorf("after add and remove: %q, want %q", without, original)
		}
	}
}

func TestDamagedBlocksAreRefusedNotGuessed(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, content, err string }{
		{"a begin marker without an end", debianHosts + hostsfile.Begin + "\n1.1.1.1 x\n", "without an end marker"},
		{"an end marker without a begin", hostsfile.End + "\n", "without a begin marker"},
		{"two blocks", hostsfile.Begin + "\n" + hostsfile.End + "\n" + hostsfile.Begin + "\n" + hostsfile.End + "\n", "more than one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := hostsfile.Apply([]byte(tc.content), nexus); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestBadEntriesAreRefused(t *testing.T) {
	t.Parallel()
	for _, e := range []hostsfile.Entry{
		{IP: "300.1.1.1", Hostnames: []string{"x"}},
		{IP: "fe80::1%eth0", Hostnames: []string{"x"}},
		{IP: "127.0.0.1"},
		{IP: "127.0.0.1", Hostnames: []string{"a b"}},
		{IP: "127.0.0.1", Hostnames: []string{"a\nb"}},
		{IP: "127.0.0.1", Hostnames: []string{"a#b"}},
	} {
		if _, err := hostsfile.Apply([]byte(debianHosts), []hostsfile.Entry{e}); err == nil {
			t.Errorf("entry %+v accepted", e)
		}
	}
}

func FuzzApply(f *testing.F) {
	f.Add([]byte(debianHosts), "127.0.0.1", "nexus.local")
	f.Add([]byte("no newline"), "::1", "a")
	f.Add([]byte(hostsfile.Begin+"\n"+hostsfile.End+"\n"), "10.0.0.1", "b c")
	f.Fuzz(func(t *testing.T, content []byte, ip, names string) {
		entries := []hostsfile.Entry{{IP: ip, Hostnames: strings.Fields(names)}}
		with, err := hostsfile.Apply(content, entries)
		if err != nil {
			return
		}
		again, err := hostsfile.Apply(with, entries)
		if err != nil || !bytes.Equal(again, with) {
			t.Fatalf("not idempotent: %q then %q (%v)", with, again, err)
		}
		without, err := hostsfile.Apply(with, nil)
		if err != nil {
			t.Fatalf("removing the block failed: %v", err)
		}
		// A file that had no block of ours comes back exactly.
		if _, err := hostsfile.Read(content); err == nil && !bytes.Contains(content, []byte(hostsfile.Begin)) && !bytes.Equal(without, content) {
			t.Fatalf("add+remove changed the file:\n%q\n%q", content, without)
		}
		// Lines outside the block are never changed.
		if !bytes.Contains(content, []byte("# BEGIN regwire")) && !bytes.Contains(content, []byte(hostsfile.End)) && !bytes.HasPrefix(with, content) {
			t.Fatalf("appending changed existing bytes: %q -> %q", content, with)
		}
	})
}

func TestLookupReadsAHostsFileAsResolversDo(t *testing.T) {
	t.Parallel()
	content := []byte("# comment 10.0.0.9 nexus.local\n127.0.0.1\tlocalhost\n10.0.0.5 registry nexus.local # regwire\n10.0.0.6 nexus.local\n")
	cases := []struct{ name, want string }{
		{"nexus.local", "10.0.0.5"},
		{"NEXUS.LOCAL", "10.0.0.5"},
		{"registry", "10.0.0.5"},
		{"absent.local", ""},
		{"#", ""},
	}
	for _, tc := range cases {
		if got := hostsfile.Lookup(content, tc.name); got != tc.want {
			t.Errorf("Lookup(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFillerAnInterruptedRewriteLeftIsDropped(t *testing.T) {
	t.Parallel()
	entries := []hostsfile.Entry{{IP: "10.1.1.1", Hostnames: []string{"nexus.local"}}}
	clean, err := hostsfile.Apply([]byte("127.0.0.1 localhost\n"), entries)
	if err != nil {
		t.Fatal(err)
	}
	left := append(append([]byte{}, clean...), hostsfile.Filler(40)...)
	left = append(left, hostsfile.Filler(3)...)
	if got, err := hostsfile.Read(left); err != nil || len(got) != 1 {
		t.Fatalf("Read with filler at the end: %v, %v", got, err)
	}
	got, err := hostsfile.Apply(left, entries)
	if err != nil || string(got) != string(clean) {
		t.Fatalf("Apply over filler gave %q (%v), want %q", got, err, clean)
	}
	if n := len(hostsfile.Filler(40)); n < 40 {
		t.Errorf("hostsfile.Filler(40) is %d bytes, want at least 40", n)
	}
	// A user's own comment that merely starts like filler is kept.
	own := append(append([]byte{}, clean...), []byte(hostsfile.Unused+" by hand\n")...)
	if got, _ := hostsfile.Apply(own, entries); string(got) != string(own) {
		t.Errorf("a comment of the user's was dropped: %q", got)
	}
}
