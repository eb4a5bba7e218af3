package cabundle_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/cabundle"
	"github.com/regwire/regwire/internal/test/testutil"
)

func TestParse(t *testing.T) {
	t.Parallel()
	now := time.Now()
	first := testutil.CAPEM(t, "first", now.Add(-time.Hour), now.Add(48*time.Hour))
	second := testutil.CAPEM(t, "second", now.Add(-time.Hour), now.Add(24*time.Hour))
	expired := testutil.CAPEM(t, "expired", now.Add(-48*time.Hour), now.Add(-time.Hour))
	key := "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n"

	cases := []struct {
		name     string
		data     string
		certs    int
		notAfter time.Time
		err      string
	}{
		{name: "a single certificate parses", data: first, certs: 1},
		{name: "a bundle of two reports the earlier expiry", data: first + second, certs: 2},
		{name: "blank lines and CRLF around blocks are fine", data: "\r\n" + first + "\n\n" + strings.ReplaceAll(second, "\n", "\r\n"), certs: 2},
		{name: "an empty bundle is rejected", data: "", err: "no PEM CERTIFICATE block"},
		{name: "a private key is rejected and named", data: first + key, err: `PEM block 2 is a "EC PRIVATE KEY"`},
		{name: "trailing garbage is rejected", data: first + "garbage", err: "unparsable data after certificate 1"},
		{name: "a block that is not DER is rejected", data: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", err: "PEM block 1"},
		{name: "an expired certificate still parses", data: expired, certs: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := cabundle.Parse([]byte(tc.data))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Certificates) != tc.certs {
				t.Errorf("%d certificates, want %d", len(b.Certificates), tc.certs)
			}
		})
	}

	b, err := cabundle.Parse([]byte(first + second))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.NotAfter(), b.Certificates[1].NotAfter; !got.Equal(want) {
		t.Errorf("NotAfter = %v, want the second certificate's %v", got, want)
	}
	if b.Expired(now) != nil {
		t.Error("a current bundle reported an expired certificate")
	}
	if c := b.Expired(now.Add(36 * time.Hour)); c == nil || c.Subject.CommonName != "second" {
		t.Errorf("Expired(now+36h) = %v, want the second certificate", c)
	}
	if _, err := cabundle.Parse(nil); !errors.Is(err, cabundle.ErrEmpty) {
		t.Errorf("Parse(nil) = %v, want ErrEmpty", err)
	}
}

func FuzzParse(f *testing.F) {
	now := time.Now()
	f.Add([]byte(testutil.CAPEM(f, "seed", now, now.Add(time.Hour))))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA"))
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := cabundle.Parse(data)
		if err != nil {
			return
		}
		if len(b.Certificates) == 0 {
			t.Fatal("Parse succeeded with no certificates")
		}
		_ = b.NotAfter()
		_ = b.Pool()
	})
}
