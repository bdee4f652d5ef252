package sinks

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// DecodeOptions decodes a sink's options into out, a pointer to a struct
// whose fields carry `yaml:"key"` tags. Durations accept Go syntax ("10s"),
// numbers and booleans accept their string forms (environment overrides are
// strings). Every unknown key and every undecodable value is reported, each
// as "<key>: <problem>", joined with errors.Join. Values are never quoted in
// the errors, so secrets cannot leak through them.
func DecodeOptions(options map[string]any, out any) error {
	var md mapstructure.Metadata
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		TagName:          "yaml",
		Result:           out,
		Metadata:         &md,
		WeaklyTypedInput: true,
		DecodeHook:       mapstructure.StringToTimeDurationHookFunc(),
	})
	if err != nil {
		return fmt.Errorf("options decoder: %w", err)
	}
	var errs []error
	// Decode key by key so that one bad value does not hide the others and
	// each problem names its key.
	keys := make([]string, 0, len(options))
	for k := range options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	known := structKeys(out)
	for _, k := range keys {
		if !known[k] {
			errs = append(errs, fmt.Errorf("%s: unknown key", k))
			continue
		}
		if err := dec.Decode(map[string]any{k: options[k]}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s", k, describeDecodeError(err)))
		}
	}
	return errors.Join(errs...)
}

// structKeys returns the yaml keys of the struct out points to.
func structKeys(out any) map[string]bool {
	t := reflect.TypeOf(out)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	keys := make(map[string]bool)
	if t.Kind() != reflect.Struct {
		return keys
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		keys[name] = true
	}
	return keys
}

// describeDecodeError turns a mapstructure error into a short reason that
// does not quote the offending value.
func describeDecodeError(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "time: invalid duration"), strings.Contains(msg, "time: missing unit"), strings.Contains(msg, "time: unknown unit"):
		return "invalid duration (want Go syntax such as 250ms, 10s, 5m)"
	case strings.Contains(msg, "expected type 'bool'"), strings.Contains(msg, "cannot parse") && strings.Contains(msg, "as bool"):
		return "invalid boolean"
	case strings.Contains(msg, "expected type 'int"), strings.Contains(msg, "as int"), strings.Contains(msg, "as uint"):
		return "invalid integer"
	case strings.Contains(msg, "expected type 'float"), strings.Contains(msg, "as float"):
		return "invalid number"
	case strings.Contains(msg, "expected a map"), strings.Contains(msg, "expected type 'map"):
		return "must be a mapping"
	case strings.Contains(msg, "source data must be an array or slice"), strings.Contains(msg, "expected type '[]"):
		return "must be a list"
	case strings.Contains(msg, "expected type 'string'"), strings.Contains(msg, "expected type 'sinks.Secret'"):
		return "must be a string"
	}
	return "invalid value"
}

// ParseRate parses a rate such as "1/s", "30/m", "2/1s" or "10/500ms" into
// events per second. "" means no limit and returns 0.
func ParseRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return 0, errors.New("invalid rate (want N/unit such as 1/s, 30/m)")
	}
	var count float64
	if _, err := fmt.Sscanf(n, "%g", &count); err != nil || count <= 0 {
		return 0, errors.New("invalid rate (want N/unit such as 1/s, 30/m)")
	}
	switch per {
	case "s":
		per = "1s"
	case "m":
		per = "1m"
	case "h":
		per = "1h"
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return 0, errors.New("invalid rate (want N/unit such as 1/s, 30/m)")
	}
	return count / d.Seconds(), nil
}
