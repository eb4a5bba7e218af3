package local

import (
	"io"
	"log/slog"
)

// newTextHandler writes the controllers' structured logs as text lines.
func newTextHandler(w io.Writer) slog.Handler {
	return slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})
}
