package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// defaultEvent is the built-in Recall bot status event used when no --events
// are given.
const defaultEvent = `{"event":"bot.in_call_recording","data":{"data":{"code":"in_call_recording","sub_code":null,"updated_at":"2025-03-14T15:00:04.512907+00:00"},"bot":{"id":"950132d0-41f2-4d79-a2f4-2c14525554e4","metadata":{"customer_id":"cus_7QkR2mZ0","workspace":"acme-eng","source":"calendar"}}}}`

// loadEvents reads the event bodies named by paths. A path naming a directory
// contributes every *.json file in it, in lexical order. With no paths the
// built-in event is returned. Every body must be valid JSON.
func loadEvents(paths []string) ([][]byte, error) {
	if len(paths) == 0 {
		return [][]byte{[]byte(defaultEvent)}, nil
	}
	var bodies [][]byte
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		files := []string{p}
		if st.IsDir() {
			files, err = filepath.Glob(filepath.Join(p, "*.json"))
			if err != nil {
				return nil, fmt.Errorf("events: glob %s: %w", p, err)
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("events: no *.json files in %s", p)
			}
			sort.Strings(files)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("events: %w", err)
			}
			if !json.Valid(b) {
				return nil, fmt.Errorf("events: %s is not valid JSON", f)
			}
			bodies = append(bodies, b)
		}
	}
	return bodies, nil
}
