package sinks

import "log/slog"

// Secret is a configuration value that must never be shown: it redacts
// itself when printed, marshalled or logged. Use Reveal where the value is
// really needed.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String returns a placeholder, never the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// MarshalText keeps encoders (JSON, YAML) from writing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue keeps log/slog from writing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
