package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// checkReport is what check mode prints: the lines of an archive file and
// how the acknowledged ids (those written by --ids-out) appear in it.
type checkReport struct {
	Lines    int64 `json:"lines"`     // lines in the archive file
	Acked    int64 `json:"acked"`     // distinct acknowledged ids read from the ids files
	Once     int64 `json:"once"`      // acknowledged ids found exactly once
	Missing  int64 `json:"missing"`   // acknowledged ids not found
	Repeated int64 `json:"repeated"`  // acknowledged ids found more than once
	NoMsgID  int64 `json:"no_msg_id"` // lines without a msg_id
}

// maxArchiveLine bounds one line of an archive file.
const maxArchiveLine = 16 << 20

// runCheck reads the archive file cfg.checkFile (JSON lines carrying a
// "msg_id", as the relay's file sink and the peer write them) and the ids
// files cfg.checkIDs, and prints a checkReport as JSON. It fails when the
// archive cannot be read or a line is not JSON; the caller judges the counts.
func runCheck(cfg config, stdout io.Writer) error {
	acked := map[string]int{}
	for _, path := range cfg.checkIDs {
		if err := readIDs(path, acked); err != nil {
			return err
		}
	}
	rep, err := countArchive(cfg.checkFile, acked)
	if err != nil {
		return err
	}
	rep.Acked = int64(len(acked))
	for _, n := range acked {
		switch {
		case n == 0:
			rep.Missing++
		case n == 1:
			rep.Once++
		default:
			rep.Repeated++
		}
	}
	return json.NewEncoder(stdout).Encode(rep)
}

// readIDs adds each non-empty line of the file at path to ids, with count 0.
func readIDs(path string, ids map[string]int) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("check ids: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if id := sc.Text(); id != "" {
			ids[id] = 0
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("check ids %s: %w", path, err)
	}
	return nil
}

// countArchive counts the lines of the archive at path and, for each
// line's msg_id that is a key of acked, increments its count.
func countArchive(path string, acked map[string]int) (checkReport, error) {
	var rep checkReport
	f, err := os.Open(path)
	if err != nil {
		return rep, fmt.Errorf("check file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxArchiveLine)
	var line struct {
		MsgID string `json:"msg_id"`
	}
	for sc.Scan() {
		rep.Lines++
		line.MsgID = ""
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return rep, fmt.Errorf("check file %s line %d: %w", path, rep.Lines, err)
		}
		if line.MsgID == "" {
			rep.NoMsgID++
			continue
		}
		if n, ok := acked[line.MsgID]; ok {
			acked[line.MsgID] = n + 1
		}
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("check file %s: %w", path, err)
	}
	return rep, nil
}
