package daemon

import (
	"io"
	"log/slog"
)

// NewLogger builds the process logger, and the writer the server writes
// its access lines to itself (server.Config.AccessLog): for the text
// format, w, which the text handler writes to as well, each line with one
// Write; for JSON none, and the lines go through slog.
func NewLogger(level, format string, w io.Writer) (*slog.Logger, io.Writer) {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // kong's enum already checked it
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), w
}
