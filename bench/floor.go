package main

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

// throughputs measures what bounds any copy on this machine: bytes per second through a
// loopback TCP connection and through sha256 (the target registry hashes every blob).
func throughputs() (loopback, sha float64, err error) {
	const total = 1 << 30
	buf := make([]byte, 1<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(buf)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(io.Discard, c)
		done <- err
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	for sent := 0; sent < total; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			return 0, 0, err
		}
	}
	_ = c.Close()
	if err := <-done; err != nil {
		return 0, 0, err
	}
	loopback = total / time.Since(start).Seconds()

	h := sha256.New()
	start = time.Now()
	for hashed := 0; hashed < total; hashed += len(buf) {
		h.Write(buf)
	}
	_ = h.Sum(nil)
	sha = total / time.Since(start).Seconds()
	return loopback, sha, nil
}
