// Package hostsfile edits regwire's block in an /etc/hosts file. Only the lines between
// regwire's markers are ever changed; every other byte of the file is kept, and removing
// the block gives back the file exactly as it was before regwire added it.
package hostsfile

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Markers delimiting regwire's block.
const (
	Begin = "# BEGIN regwire: managed by the regwire agent, edits in this block are overwritten"
	// BeginAfterUnterminated starts a block that regwire appended to a file whose last line
	// had no newline; removing the block removes the newline regwire added too.
	BeginAfterUnterminated = Begin + " (newline added before)"
	End                    = "# END regwire"
	// Unused starts the filler lines a rewrite in place writes past the new end of a file
	// that shrinks, before it cuts the file to length: a kill between the two leaves them,
	// and the next Apply drops them.
	Unused = "# regwire: unused"
)

// Filler returns at least n bytes of filler lines (Unused, padded with spaces).
func Filler(n int) []byte {
	line := Unused + strings.Repeat(" ", max(n-len(Unused)-1, 0)) + "\n"
	return []byte(line)
}

// trimFiller drops the filler lines at the end of content.
func trimFiller(content []byte) []byte {
	for {
		body := bytes.TrimSuffix(content, []byte("\n"))
		i := bytes.LastIndexByte(body, '\n') + 1
		line := body[i:]
		if len(body) == len(content) || !bytes.HasPrefix(line, []byte(Unused)) || len(bytes.TrimRight(line[len(Unused):], " ")) > 0 {
			return content
		}
		content = content[:i]
	}
}

// Entry is one line of the block: an address and the names that resolve to it.
type Entry struct {
	IP        string
	Hostnames []string
	// Owner, when set, is written as a trailing comment: the RegistryMirror that asked for
	// the line.
	Owner string
}

// Apply returns content with regwire's block holding entries: replaced where it is, added
// at the end when there is none, removed when entries is empty. Filler lines an
// interrupted rewrite left at the end go too.
func Apply(content []byte, entries []Entry) ([]byte, error) {
	content = trimFiller(content)
	block, err := render(entries)
	if err != nil {
		return nil, err
	}
	start, stop, unterminated, found, err := find(content)
	if err != nil {
		return nil, err
	}
	if found {
		if len(entries) == 0 {
			if unterminated {
				start-- // the newline regwire added before its block
			}
			return concat(content[:start], content[stop:]), nil
		}
		return concat(content[:start], block(unterminated), content[stop:]), nil
	}
	if len(entries) == 0 {
		return content, nil
	}
	if len(content) > 0 && content[len(content)-1] != '\n' {
		return concat(content, []byte("\n"), block(true)), nil
	}
	return concat(content, block(false)), nil
}

// Read returns the entries of regwire's block in content.
func Read(content []byte) ([]Entry, error) {
	start, stop, _, found, err := find(trimFiller(content))
	if err != nil || !found {
		return nil, err
	}
	var out []Entry
	lines := strings.Split(strings.TrimSuffix(string(content[start:stop]), "\n"), "\n")
	for _, l := range lines[1 : len(lines)-1] {
		l, owner, _ := strings.Cut(l, "#")
		f := strings.Fields(l)
		if len(f) < 2 {
			return nil, fmt.Errorf("malformed line %q in regwire's block", l)
		}
		out = append(out, Entry{IP: f[0], Hostnames: f[1:], Owner: strings.TrimSpace(owner)})
	}
	return out, nil
}

// find locates the block: content[start:stop] holds the begin line through the end line
// and its newline.
func find(content []byte) (start, stop int, unterminated, found bool, err error) {
	start = -1
	pos := 0
	for pos < len(content) {
		eol := bytes.IndexByte(content[pos:], '\n')
		next := len(content)
		if eol >= 0 {
			next = pos + eol + 1
		}
		line := string(bytes.TrimRight(content[pos:next], "\r\n"))
		switch line {
		case Begin, BeginAfterUnterminated:
			if start >= 0 || found {
				return 0, 0, false, false, errors.New("/etc/hosts has more than one regwire block; remove the extra one by hand")
			}
			start, unterminated = pos, line == BeginAfterUnterminated
		case End:
			if start < 0 {
				return 0, 0, false, false, errors.New("/etc/hosts has a regwire end marker without a begin marker; remove it by hand")
			}
			if found {
				return 0, 0, false, false, errors.New("/etc/hosts has more than one regwire block; remove the extra one by hand")
			}
			stop, found = next, true
		}
		pos = next
	}
	if start >= 0 && !found {
		return 0, 0, false, false, errors.New("/etc/hosts has a regwire begin marker without an end marker; remove the block by hand")
	}
	if unterminated && (start == 0 || content[start-1] != '\n') {
		unterminated = false // the newline is gone; never remove a byte that is not ours
	}
	return start, stop, unterminated, found, nil
}

// render checks entries and returns a function producing the block text.
func render(entries []Entry) (func(unterminated bool) []byte, error) {
	var body strings.Builder
	for i, e := range entries {
		addr, err := netip.ParseAddr(e.IP)
		if err != nil || addr.Zone() != "" {
			return nil, fmt.Errorf("entry %d: %q is not an IP address", i, e.IP)
		}
		if len(e.Hostnames) == 0 {
			return nil, fmt.Errorf("entry %d (%s): no hostnames", i, e.IP)
		}
		for _, h := range e.Hostnames {
			if h == "" || strings.ContainsFunc(h, func(r rune) bool { return r <= ' ' || r == '#' || r == 0x7f }) {
				return nil, fmt.Errorf("entry %d (%s): hostname %q must not be empty or contain whitespace, '#' or control characters", i, e.IP, h)
			}
		}
		if strings.ContainsFunc(e.Owner, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("entry %d (%s): owner %q must not contain control characters", i, e.IP, e.Owner)
		}
		fmt.Fprintf(&body, "%s\t%s", addr, strings.Join(e.Hostnames, " "))
		if e.Owner != "" {
			fmt.Fprintf(&body, "\t# %s", e.Owner)
		}
		body.WriteString("\n")
	}
	return func(unterminated bool) []byte {
		begin := Begin
		if unterminated {
			begin = BeginAfterUnterminated
		}
		return []byte(begin + "\n" + body.String() + End + "\n")
	}, nil
}

func concat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

// Lookup returns the first address content (a hosts file) gives name, or "" — as the C
// library and Go's resolver read /etc/hosts: fields separated by blanks, comments from #,
// names compared without case.
func Lookup(content []byte, name string) string {
	for _, line := range strings.Split(string(content), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		for _, h := range f[1:] {
			if strings.EqualFold(h, name) {
				return f[0]
			}
		}
	}
	return ""
}
