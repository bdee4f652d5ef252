package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reads of stored messages that nats.go's jetstream package does not offer:
// a batch of messages in one request, and the first message at or after a
// time. Both go through JetStream's direct get API (the streams they read
// allow it), which the server answers without a round of its meta layer.

// directRequest is the direct get request (nats-server's JSApiMsgGetRequest).
type directRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	MaxBytes  int        `json:"max_bytes,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

// storedMsg is one message read by a direct get.
type storedMsg struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// directBatchBytes bounds what one batch request makes the server send.
const directBatchBytes = 8 << 20

// directBatch reads up to n messages of stream from seq on (deleted ones
// skipped), in order, and calls fn for each until it returns false. It
// returns the sequence to continue from: one past the last message read,
// or 0 when the stream has no message at or after seq.
func (s *jsStore) directBatch(ctx context.Context, stream string, seq uint64, n int, fn func(*storedMsg) bool) (next uint64, err error) {
	return s.directMany(ctx, stream, directRequest{Seq: max(seq, 1), Batch: n, MaxBytes: directBatchBytes}, fn)
}

// directMany sends a direct get request answered by several messages and an
// end-of-batch marker, as directBatch describes.
func (s *jsStore) directMany(ctx context.Context, stream string, r directRequest, fn func(*storedMsg) bool) (next uint64, err error) {
	req, _ := json.Marshal(r)
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
		return 0, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	stop := false
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return 0, err
		}
		switch m.Header.Get("Status") {
		case "":
		case "204": // end of batch
			return next, nil
		case "404":
			return next, nil
		default:
			return 0, fmt.Errorf("direct get %s: %s %s", stream, m.Header.Get("Status"), m.Header.Get("Description"))
		}
		sm, err := parseDirect(m)
		if err != nil {
			return 0, err
		}
		next = sm.Seq + 1
		if !stop && !fn(sm) {
			stop = true // read the rest of the batch off the inbox
		}
	}
}

// parseDirect reads the stream's headers off a direct get answer.
func parseDirect(m *nats.Msg) (*storedMsg, error) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, errors.New("direct get: answer without a sequence")
	}
	ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	return &storedMsg{Seq: seq, Subject: m.Header.Get(jetstream.SubjectHeader), Time: ts, Header: m.Header, Data: m.Data}, nil
}

// directGet reads one message: the first at or after seq (deleted ones
// skipped), or, with t set, the first stored at or after t. It returns
// ErrNotFound when there is none.
func (s *jsStore) directGet(ctx context.Context, stream string, seq uint64, t time.Time) (*storedMsg, error) {
	r := directRequest{Seq: max(seq, 1), NextFor: ">"}
	if !t.IsZero() {
		r.Seq, r.StartTime = 0, &t
	}
	req, _ := json.Marshal(r)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	m, err := s.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream, req)
	if err != nil {
		return nil, err
	}
	switch m.Header.Get("Status") {
	case "":
	case "404":
		return nil, ErrNotFound
	default:
		return nil, fmt.Errorf("direct get %s: %s %s", stream, m.Header.Get("Status"), m.Header.Get("Description"))
	}
	return parseDirect(m)
}
