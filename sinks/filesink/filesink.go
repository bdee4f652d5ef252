// Package filesink appends events to a local JSON Lines file (config type
// "file"), rotating it by size with lumberjack.
//
// Each delivery is one line:
//
//	{"received_at":"2025-03-19T17:44:07.123456789Z","source":"recall","msg_id":"msg_…","event":"transcript.failed","rules":["captions"],"payload":{…}}
//
// payload is the original body embedded as raw JSON, not decoded and
// re-encoded. The relay delivers only bodies that ingest found to be JSON
// objects, so a body on one line that has the shape of an object ({…}) is
// written byte for byte, unchecked. Any other body is compacted, with the
// result json.Compact would give (a line cannot hold a newline, and a valid
// body's newlines are all insignificant whitespace); a body that is not
// valid JSON is embedded as a JSON string.
//
// Each line is written with a single Write under a mutex, so concurrent Sends
// never interleave. Write errors are retryable; a line too large for the
// rotation size is permanent.
package filesink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/relay-dev/relay/sinks"
)

// Type is the sink's type, registered as "file" by sinks/builtin.
var Type = sinks.Type{New: New, Concurrency: 0}

var (
	_ sinks.Sink      = (*Sink)(nil)
	_ sinks.Previewer = (*Sink)(nil)
	_ sinks.RawSender = (*Sink)(nil)
)

// Options are the sink's config keys.
type Options struct {
	// Path is the file to append to; required. Missing parent directories
	// are created.
	Path string `yaml:"path"`
	// MaxSizeMB is the size in megabytes (MiB) at which the file is rotated;
	// default 100; 0 never rotates.
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxBackups is how many rotated files to keep; default 10; 0 keeps
	// them all (lumberjack's meaning).
	MaxBackups int `yaml:"max_backups"`
	// Fsync, when true, makes every Send sync the file to stable storage
	// before it returns.
	Fsync bool `yaml:"fsync"`
}

const megabyte = 1 << 20

// fileMode is the mode of files the sink creates: payloads may hold
// personal data.
const fileMode = 0o600

// Sink is a file sink. Safe for concurrent use.
type Sink struct {
	path    string
	fsync   bool
	maxLine int // 0: no limit

	maxSizeMB, maxBackups int

	mu     sync.Mutex
	w      io.WriteCloser // *os.File or *lumberjack.Logger; nil until the first Send
	torn   bool           // the last write was partial: start with a newline
	closed bool
}

// New builds a file sink from its config options; it uses nothing of env.
// Each problem is reported as "<key>: <problem>", joined with errors.Join.
// It touches no file: the directory and the file are created by the first
// Send (so that validating a config has no side effects).
func New(name string, options map[string]any, env sinks.Env) (sinks.Sink, error) {
	o := Options{MaxSizeMB: 100, MaxBackups: 10}
	// Report decoding and validation problems together; a key that failed
	// to decode keeps its default.
	var errs []error
	if err := sinks.DecodeOptions(options, &o); err != nil {
		errs = append(errs, err)
	}
	if o.Path == "" {
		errs = append(errs, errors.New("path: required"))
	}
	if o.MaxSizeMB < 0 {
		errs = append(errs, errors.New("max_size_mb: must be 0 or more"))
	}
	if o.MaxBackups < 0 {
		errs = append(errs, errors.New("max_backups: must be 0 or more"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	return &Sink{
		path:       filepath.Clean(o.Path),
		fsync:      o.Fsync,
		maxLine:    o.MaxSizeMB * megabyte,
		maxSizeMB:  o.MaxSizeMB,
		maxBackups: o.MaxBackups,
	}, nil
}

// open creates the file's directory and opens the file (or the rotating
// writer). Called with s.mu held.
func (s *Sink) open() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	if s.maxSizeMB == 0 {
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		s.w = f
		return nil
	}
	s.w = &lumberjack.Logger{Filename: s.path, MaxSize: s.maxSizeMB, MaxBackups: s.maxBackups}
	return nil
}

// Send appends d as one line.
func (s *Sink) Send(ctx context.Context, d sinks.Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.maxLine > 0 && len(d.Body) >= s.maxLine {
		return sinks.Permanent(fmt.Errorf("body of %d bytes exceeds max_size_mb", len(d.Body)))
	}
	line := encodeLine(d)
	if s.maxLine > 0 && len(line) > s.maxLine {
		return sinks.Permanent(fmt.Errorf("line of %d bytes exceeds max_size_mb", len(line)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("file sink closed")
	}
	if s.w == nil {
		if err := s.open(); err != nil {
			return fmt.Errorf("write %s: %w", s.path, err)
		}
	}
	if s.torn {
		// End the partial line a failed write left so that this line,
		// at least, parses.
		line = append([]byte{'\n'}, line...)
	}
	n, err := s.w.Write(line)
	if err != nil {
		s.torn = n > 0 || s.torn
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	s.torn = false
	if s.fsync {
		if err := s.sync(); err != nil {
			return fmt.Errorf("sync %s: %w", s.path, err)
		}
	}
	return nil
}

// sync flushes the file to stable storage. lumberjack does not expose its
// *os.File, so the sink opens the current file (rotation happens inside
// Write, so after a Write the path names the file that holds the line) and
// syncs it: fsync flushes the file, whichever descriptor wrote the data.
func (s *Sink) sync() error {
	if f, ok := s.w.(*os.File); ok {
		return f.Sync()
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// RawOnly reports that the sink never reads Delivery.Data.
func (s *Sink) RawOnly() bool { return true }

// Preview shows the line Send would append.
func (s *Sink) Preview(d sinks.Delivery) (sinks.Preview, error) {
	return sinks.Preview{Kind: "file", Request: "append " + s.path, Body: string(encodeLine(d))}, nil
}

// Close closes the file. Send fails after Close.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.w == nil {
		return nil
	}
	if err := s.w.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return nil
}

// encodeLine returns d's JSON Lines record, newline included. See the package
// documentation for how the payload is embedded.
func encodeLine(d sinks.Delivery) []byte {
	var b bytes.Buffer
	b.Grow(len(d.Body) + 256)
	b.WriteString(`{"received_at":`)
	writeString(&b, d.ReceivedAt.UTC().Format(time.RFC3339Nano))
	b.WriteString(`,"source":`)
	writeString(&b, d.Source)
	b.WriteString(`,"msg_id":`)
	writeString(&b, d.MsgID)
	b.WriteString(`,"event":`)
	writeString(&b, d.Event)
	b.WriteString(`,"rules":[`)
	for i, r := range d.Rules {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(&b, r)
	}
	b.WriteString(`],"payload":`)
	writePayload(&b, d.Body)
	b.WriteString("}\n")
	return b.Bytes()
}

// writePayload embeds body, its surrounding whitespace trimmed, as the
// package documentation says: a one-line object as it is, anything else
// compacted, or as a JSON string when it is not valid JSON.
func writePayload(b *bytes.Buffer, body []byte) {
	raw := bytes.TrimSpace(body)
	if isOneLineObject(raw) {
		b.Write(raw)
		return
	}
	// jsontext compacts (and checks) five times faster than json.Compact
	// (BenchmarkWritePayload/indented), with the same result: strings and
	// numbers kept as written, duplicate names and invalid UTF-8 let
	// through (FuzzWritePayload holds it to json.Compact).
	n := b.Len()
	b.Write(raw)
	v := jsontext.Value(b.Bytes()[n:])
	if err := v.Compact(); err != nil {
		b.Truncate(n)
		writeString(b, string(body))
		return
	}
	b.Truncate(n)
	b.Write(v) // v is b's own bytes when Compact worked in place: a no-op copy
}

// isOneLineObject reports whether raw has the shape of a JSON object and no
// line break. A JSON string cannot hold a raw line break, so a valid object
// without one is already on one line and needs no compaction.
func isOneLineObject(raw []byte) bool {
	return len(raw) >= 2 && raw[0] == '{' && raw[len(raw)-1] == '}' &&
		bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0
}

// writeString writes s as a JSON string the way writeJSON does, without an
// encoder when s is printable ASCII that needs no escaping.
func writeString(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			writeJSON(b, s)
			return
		}
	}
	b.WriteByte('"')
	b.WriteString(s)
	b.WriteByte('"')
}

// writeJSON writes v as JSON without HTML escaping and without the trailing
// newline json.Encoder adds.
func writeJSON(b *bytes.Buffer, v any) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // strings and []string always encode
	b.Truncate(b.Len() - 1)
}
