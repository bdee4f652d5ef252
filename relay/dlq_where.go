package relay

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/rules"
)

// deadLetterEnv is what a where expression over dead letters sees: the rule
// environment of the event plus the rules that routed it to the sink, the
// sink, the reason it was given up and the attempts made.
type deadLetterEnv struct {
	rules.Env
	Rules     []string `expr:"rules"`
	Sink      string   `expr:"sink"`
	LastError string   `expr:"last_error"`
	Attempts  int      `expr:"attempts"`
}

// compileDeadFilter compiles a where expression over dead letters; ""
// matches every dead letter.
func compileDeadFilter(where string) (*rules.Condition, error) {
	if strings.TrimSpace(where) == "" {
		return nil, nil
	}
	return rules.CompileCondition(where, deadLetterEnv{})
}

// deadMatches evaluates where over the dead letter m (a run-time failure is
// no match).
func deadMatches(where *rules.Condition, m *jetstream.RawStreamMsg) bool {
	if where == nil {
		return true
	}
	dl := deadLetterFromMsg(m, false)
	env, err := rules.NewEnv(m.Data, rules.Meta{Source: dl.Source, MsgID: dl.MsgID, ReceivedAt: dl.ReceivedAt})
	if err != nil {
		return false
	}
	ok, _ := where.Match(&deadLetterEnv{Env: *env, Rules: dl.Rules, Sink: dl.Sink, LastError: dl.LastError, Attempts: dl.Attempts})
	return ok
}

// purgeDeadWhere drops every dead letter of sink (or all, sink "") that
// where matches and returns how many it dropped.
func (s *jsStore) purgeDeadWhere(ctx context.Context, sink string, where *rules.Condition) (uint64, error) {
	ids, err := s.deadIDs(ctx, sink, where)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, id := range ids {
		if err := s.deleteDead(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			return n, err
		}
		n++
	}
	return n, nil
}

// deadFilterOf compiles the where of a dead-letter route; on a problem it
// answers 400 with the compiler's message and returns false.
func deadFilterOf(w http.ResponseWriter, where string) (*rules.Condition, bool) {
	c, err := compileDeadFilter(where)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(whereProblem+err.Error()))
		return nil, false
	}
	return c, true
}
