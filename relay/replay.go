package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ReplayReport is the answer of an events replay.
type ReplayReport struct {
	// Sink is the sink the events were (or, in a dry run, would be) sent to.
	Sink string `json:"sink"`
	// DryRun is set when nothing was sent.
	DryRun bool `json:"dry_run"`
	// Matched is the number of stored events the query selected; every one
	// was queued for delivery unless DryRun.
	Matched int `json:"matched"`
	// IDs are the ids of the first maxReportIDs of them, oldest first.
	IDs []uint64 `json:"ids"`
}

// maxReportIDs bounds the ids a replay answer lists.
const maxReportIDs = 1000

// replayPending bounds the replays published and not yet confirmed.
const replayPending = 256

// replayEvents queues every stored event q selects for delivery to sink,
// oldest first, through the sink's consumer as a replay: with retries and
// dead letters, from attempt 1, under the event's own message id (which
// HTTP sinks send as Idempotency-Key). A dry run only counts them.
func (s *jsStore) replayEvents(ctx context.Context, q eventQuery, sink string, dryRun bool) (ReplayReport, error) {
	rep := ReplayReport{Sink: sink, DryRun: dryRun, IDs: []uint64{}}
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	run := hex.EncodeToString(nonce[:]) // one replay's message ids differ from another's
	var futures []jetstream.PubAckFuture
	wait := func() error {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("queue replay: %w", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	err := s.eachEvent(ctx, q, func(e StoredEvent) error {
		rep.Matched++
		if len(rep.IDs) < maxReportIDs {
			rep.IDs = append(rep.IDs, e.ID)
		}
		if dryRun {
			return nil
		}
		f, err := s.js.PublishMsgAsync(replayMsg(e, sink),
			jetstream.WithMsgID("replay:"+sink+":"+strconv.FormatUint(e.ID, 10)+":"+run),
			jetstream.WithExpectStream(eventsStream))
		if err != nil {
			return fmt.Errorf("queue replay: %w", err)
		}
		futures = append(futures, f)
		if len(futures) >= replayPending {
			return wait()
		}
		return nil
	})
	if err == nil {
		err = wait()
	}
	return rep, err
}

// replayMsg is the events-stream message that delivers e to sink again.
func replayMsg(e StoredEvent, sink string) *nats.Msg {
	ruleNames := e.Rules
	if len(ruleNames) == 0 {
		ruleNames = []string{"replay"}
	}
	m := nats.NewMsg(replaySubject + sink)
	m.Data = e.body
	m.Header.Set(hdrMsgID, e.MsgID)
	m.Header.Set(hdrSource, e.Source)
	m.Header.Set(hdrReceivedAt, e.ReceivedAt.UTC().Format(time.RFC3339Nano))
	if e.Event != "" {
		m.Header.Set(hdrEvent, e.Event)
	}
	m.Header.Set(hdrRoute, encodeRoute(map[string][]string{sink: ruleNames}, []string{sink}))
	m.Header.Set(hdrEventID, strconv.FormatUint(e.ID, 10))
	return m
}

func (s *Server) handleEventsReplay(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sink := q.Get("sink")
	if sink == "" {
		writeJSON(w, http.StatusBadRequest, errorBody("sink is required"))
		return
	}
	if strings.TrimSpace(q.Get("where")) == "" {
		writeJSON(w, http.StatusBadRequest, errorBody(`where is required (where=true replays every stored event)`))
		return
	}
	if !s.isSink(sink) {
		writeJSON(w, http.StatusConflict, errorBody(fmt.Sprintf("sink %q is not configured", sink)))
		return
	}
	eq, ok := s.eventQueryOf(w, q, compileEventFilter)
	if !ok {
		return
	}
	dryRun, _ := strconv.ParseBool(q.Get("dry_run"))
	rep, err := s.store.replayEvents(r.Context(), eq, sink, dryRun)
	if err != nil {
		s.storeError(w, err)
		return
	}
	if !dryRun {
		s.log.Info("stored events replayed", "sink", sink, "count", rep.Matched, "where", q.Get("where"))
	}
	writeJSONValue(w, http.StatusOK, rep)
}
