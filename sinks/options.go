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
			errs = append(errs, fmt.Errorf("%s: %s", k, DescribeValueError(err)))
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

// DescribeValueError turns a mapstructure decoding error into a short
// reason ("invalid integer", "invalid duration (...)") that never quotes the
// offending value, so that secrets cannot leak through config errors.
func DescribeValueError(err error) string {
	var pe *mapstructure.ParseError
	var ue *mapstructure.UnconvertibleTypeError
	switch {
	case errors.As(err, &pe):
		return "invalid " + typeWord(pe.Expected.Type())
	case errors.As(err, &ue):
		return "invalid " + typeWord(ue.Expected.Type())
	case strings.Contains(err.Error(), "time: "):
		return "invalid " + typeWord(reflect.TypeFor[time.Duration]())
	}
	return "invalid value"
}

func typeWord(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration (want Go syntax such as 250ms, 10s, 5m)"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() == reflect.String:
		return "value (want a string)"
	case t.Kind() == reflect.Slice:
		return "value (want a list)"
	case t.Kind() == reflect.Map || t.Kind() == reflect.Struct:
		return "value (want a mapping)"
	}
	return "value"
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
