package slack

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	goslack "github.com/slack-go/slack"

	"github.com/relay-dev/relay/sinks"
)

// A group_by sink turns a burst of events with the same group_by values into
// one message that counts them and lists the first few, updated in place as
// members join, at most every group_interval.
//
// Send only records the event as a member of its group in the relay's
// durable state (groupState under groupKey, a compare-and-set update) and
// returns: from then on the state holds it, and a flusher goroutine of the
// sink posts the group's message group_wait after the group opened, then
// updates it when members joined and group_interval passed since the last
// post. A group that gained no member for group_interval after its last
// post is closed (deleted from the state, at the revision read, so that a
// member joining meanwhile is kept); the next event with its values opens
// a new one. The
// flusher finds open groups in the state, so after a restart (or when the
// relay that opened a group is gone) another flusher posts them. Posting is
// claimed in the state first (flushingAt), so two flushers do not both post
// one group; a flusher taking over a claim whose first post was never
// recorded adopts the message if Slack has it (see claim.go).

// Group defaults and bounds.
const (
	defaultGroupWait     = 30 * time.Second
	defaultGroupInterval = 5 * time.Minute
	// maxGroupListed members are listed in a group's message.
	maxGroupListed = 5
	// maxGroupIDs message ids are remembered per group, so that a
	// redelivered event is not counted twice.
	maxGroupIDs = 2000
	// flushLockTTL is how long a flusher's claim on a group holds.
	flushLockTTL = time.Minute
)

// groupState is a group as stored.
type groupState struct {
	Values []string `json:"values"`
	// Opened is when the first member arrived; the message is due
	// group_wait later.
	Opened time.Time `json:"opened"`
	// Count counts members; Shown is Count as of the last post or update.
	Count int `json:"count"`
	Shown int `json:"shown"`
	// Listed are the first members, shown in the message.
	Listed []groupMember `json:"listed"`
	// Last is when the latest member arrived.
	Last time.Time `json:"last"`
	// IDs are the message ids of the members, for deduplication.
	IDs []string `json:"ids,omitempty"`
	// TS and Channel locate the posted message; FlushedAt is when it was
	// last posted or updated; FlushingAt is a flusher's claim.
	TS         string    `json:"ts,omitempty"`
	Channel    string    `json:"channel,omitempty"`
	FlushedAt  time.Time `json:"flushed_at"`
	FlushingAt time.Time `json:"flushing_at"`
}

// groupMember is one event of a group, as listed.
type groupMember struct {
	Event     string `json:"event"`
	Object    string `json:"object"`
	Status    string `json:"status"`
	SubCode   string `json:"sub_code,omitempty"`
	Code      string `json:"code,omitempty"`
	Reason    string `json:"reason,omitempty"`
	ID        string `json:"id,omitempty"`
	Bot       string `json:"bot,omitempty"`
	Recording string `json:"recording,omitempty"`
}

func memberOf(d sinks.Delivery) groupMember {
	o := objectOf(d)
	return groupMember{
		Event: o.Event, Object: o.Object, Status: o.Status, SubCode: o.SubCode, Code: o.Code, Reason: o.Reason,
		ID: o.ID, Bot: ref(d.Data, "bot").id, Recording: ref(d.Data, "recording").id,
	}
}

// add records a member; it reports false for one recorded already.
func (g *groupState) add(m groupMember, msgID string, now time.Time) bool {
	if msgID != "" && slices.Contains(g.IDs, msgID) {
		return false
	}
	if g.Count == 0 {
		g.Opened = now
	}
	g.Count++
	g.Last = now
	if len(g.Listed) < maxGroupListed {
		g.Listed = append(g.Listed, m)
	}
	if msgID != "" {
		g.IDs = append(g.IDs, msgID)
		if len(g.IDs) > maxGroupIDs {
			g.IDs = g.IDs[len(g.IDs)-maxGroupIDs:]
		}
	}
	return true
}

// groupPrefix is the state key prefix of sink name's groups.
func groupPrefix(name string) string {
	return "slack.group." + base64.RawURLEncoding.EncodeToString([]byte(name)) + "."
}

// groupValues evaluates group_by on d.
func (s *Sink) groupValues(d sinks.Delivery) ([]string, error) {
	values := make([]string, len(s.groupBy))
	for i, f := range s.groupBy {
		v, err := f(d.Data)
		if err != nil {
			return nil, sinks.Permanent(fmt.Errorf("slack group_by[%d]: %w", i, err))
		}
		values[i] = v
	}
	return values, nil
}

// sendGrouped records d in its group; the flusher posts it.
func (s *Sink) sendGrouped(ctx context.Context, d sinks.Delivery) error {
	values, err := s.groupValues(d)
	if err != nil {
		return err
	}
	st, err := s.state(ctx)
	if err != nil {
		return err
	}
	key := groupPrefix(s.name) + base64.RawURLEncoding.EncodeToString(stateJSON(values))
	m := memberOf(d)
	for {
		raw, rev, err := st.Get(ctx, key)
		if errors.Is(err, sinks.ErrStateNotFound) {
			g := groupState{Values: values}
			g.add(m, d.MsgID, s.now().UTC())
			_, err = st.Create(ctx, key, stateJSON(g))
			if errors.Is(err, sinks.ErrStateExists) {
				continue
			}
			if err == nil {
				s.wakeFlusher()
			}
			return err
		}
		if err != nil {
			return err
		}
		var g groupState
		if err := json.Unmarshal(raw, &g); err != nil {
			g = groupState{Values: values}
		}
		if !g.add(m, d.MsgID, s.now().UTC()) {
			return nil
		}
		_, err = st.Update(ctx, key, stateJSON(g), rev)
		if errors.Is(err, sinks.ErrStateConflict) {
			continue
		}
		if err == nil {
			s.wakeFlusher()
		}
		return err
	}
}

// flusher posts and updates group messages until stop is closed.
type flusher struct {
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (s *Sink) wakeFlusher() {
	if s.flush != nil {
		select {
		case s.flush.wake <- struct{}{}:
		default:
		}
	}
}

// startFlusher starts the sink's flusher, which first resumes the groups
// it finds in the state.
func (s *Sink) startFlusher() {
	s.flush = &flusher{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	tick := min(max(s.groupWait/4, 10*time.Millisecond), time.Second)
	go func() {
		defer close(s.flush.done)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-s.flush.stop
			cancel()
		}()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			s.flushDue(ctx)
			select {
			case <-s.flush.stop:
				return
			case <-t.C:
			case <-s.flush.wake:
			}
		}
	}()
}

// stopFlusher stops the flusher and waits for it; open groups stay in the
// state for the next flusher.
func (s *Sink) stopFlusher() {
	if s.flush == nil {
		return
	}
	s.flush.once.Do(func() { close(s.flush.stop) })
	<-s.flush.done
}

// flushDue posts or updates every group that is due.
func (s *Sink) flushDue(ctx context.Context) {
	st, err := s.state(ctx)
	if err != nil {
		s.log.Warn("slack groups: no state", "sink", s.name, "err", err)
		return
	}
	keys, err := st.Keys(ctx, groupPrefix(s.name))
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("slack groups: list", "sink", s.name, "err", err)
		}
		return
	}
	for _, key := range keys {
		if ctx.Err() != nil {
			return
		}
		if err := s.flushGroup(ctx, st, key); err != nil && ctx.Err() == nil {
			s.log.Warn("slack group message failed; retrying", "sink", s.name, "err", err)
		}
	}
}

// flushGroup posts or updates one group's message when due.
func (s *Sink) flushGroup(ctx context.Context, st sinks.State, key string) error {
	raw, rev, err := st.Get(ctx, key)
	if errors.Is(err, sinks.ErrStateNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var g groupState
	if err := json.Unmarshal(raw, &g); err != nil {
		return fmt.Errorf("group state unreadable: %w", err)
	}
	now := s.now().UTC()
	if !g.FlushingAt.IsZero() && now.Sub(g.FlushingAt) < flushLockTTL {
		return nil
	}
	if !g.FlushingAt.IsZero() && g.TS == "" {
		// The flusher that claimed the first post stopped: Slack may have
		// the message. Adopted, it is updated below to show every member.
		p, err := s.findOrphan(ctx, "group message", g.Channel, claim{key, g.FlushingAt})
		if err != nil {
			return err
		}
		if p != nil {
			g.TS, g.Channel, g.Shown, g.FlushedAt = p.ts, p.channel, 0, time.Time{}
		}
	}
	switch {
	case g.TS == "" && now.Sub(g.Opened) < s.groupWait:
		return nil
	case g.TS != "" && now.Sub(g.FlushedAt) < s.groupInterval:
		return nil
	case g.TS != "" && g.Count == g.Shown:
		// Quiet for a whole interval: close (delete, unless a member just
		// joined), so the next burst gets a message of its own.
		err := st.Delete(ctx, key, rev)
		if errors.Is(err, sinks.ErrStateConflict) {
			return nil // a member joined: flush next time
		}
		return err
	}
	// Claim the group, post or update, then record what was shown.
	g.FlushingAt = now
	if g.TS == "" && g.Channel == "" {
		g.Channel = s.knownChannel() // for a flusher taking over (claim.go)
	}
	if _, err := st.Update(ctx, key, stateJSON(g), rev); errors.Is(err, sinks.ErrStateConflict) {
		return nil // a member joined or another flusher claimed it
	} else if err != nil {
		return err
	}
	msg := groupMessage(g)
	channel, ts := g.Channel, g.TS
	if ts == "" {
		channel, ts, err = s.post(ctx, "post", msg, "", claim{key, g.FlushingAt}.option(""))
	} else {
		err = s.update(ctx, channel, ts, msg)
	}
	return s.recordFlush(context.WithoutCancel(ctx), st, key, g.Count, channel, ts, err)
}

// recordFlush stores the outcome of a post or update of shown members.
// A failed call only releases the claim: the members stay unshown, and the
// next flush tries again.
func (s *Sink) recordFlush(ctx context.Context, st sinks.State, key string, shown int, channel, ts string, callErr error) error {
	for {
		raw, cur, err := st.Get(ctx, key)
		if err != nil {
			return errors.Join(callErr, err)
		}
		var g groupState
		if err := json.Unmarshal(raw, &g); err != nil {
			return errors.Join(callErr, err)
		}
		g.FlushingAt = time.Time{}
		if callErr == nil {
			g.TS, g.Channel, g.Shown, g.FlushedAt = ts, channel, shown, s.now().UTC()
		}
		_, err = st.Update(ctx, key, stateJSON(g), cur)
		if errors.Is(err, sinks.ErrStateConflict) {
			continue // a member joined meanwhile: keep it, record again
		}
		return errors.Join(callErr, err)
	}
}

// groupMessage is a group's message: the count and what they share on the
// first line ("200 transcripts failed: zoom_captions_failure — bots …"),
// the reason, then the first members, then what groups them.
func groupMessage(g groupState) payload {
	head := groupHeadline(g)
	var b strings.Builder
	if len(g.Listed) > 0 && g.Listed[0].Reason != "" {
		b.WriteString(escape(oneLine(g.Listed[0].Reason)) + "\n")
	}
	for _, m := range g.Listed {
		b.WriteString("• " + memberLine(m) + "\n")
	}
	if more := g.Count - len(g.Listed); more > 0 {
		fmt.Fprintf(&b, "… and %d more", more)
	}
	blocks := []goslack.Block{
		goslack.NewSectionBlock(mrkdwn(truncate("*"+escape(head)+"*", maxSectionText)), nil, nil),
	}
	if body := strings.TrimSpace(b.String()); body != "" {
		blocks = append(blocks, goslack.NewSectionBlock(mrkdwn(truncate(body, maxSectionText)), nil, nil))
	}
	vals := make([]string, len(g.Values))
	for i, v := range g.Values {
		vals[i] = mono(v)
	}
	ctxText := "group " + strings.Join(vals, " · ")
	if !g.Opened.IsZero() {
		ctxText += fmt.Sprintf(" · since <!date^%d^{time_secs}|%s>", g.Opened.Unix(), g.Opened.UTC().Format("15:04:05 UTC"))
	}
	blocks = append(blocks, goslack.NewContextBlock("", mrkdwn(truncate(ctxText, maxContextText))))
	return payload{Text: truncate(escape(head), maxText), Blocks: blocks}
}

// groupHeadline: "200 transcripts failed: zoom_captions_failure — bots
// bot-1, bot-2, …".
func groupHeadline(g groupState) string {
	if len(g.Listed) == 0 {
		return fmt.Sprintf("%d events", g.Count)
	}
	first := g.Listed[0]
	object := oneLine(first.Object)
	if object == "" {
		object = "event"
	}
	if g.Count != 1 {
		object += "s"
	}
	head := fmt.Sprintf("%d %s %s", g.Count, object, oneLine(first.Status))
	switch {
	case first.SubCode != "":
		head += ": " + oneLine(first.SubCode)
	case first.Code != "" && first.Code != first.Status:
		head += ": " + oneLine(first.Code)
	}
	var bots []string
	for _, m := range g.Listed {
		if m.Bot != "" && !slices.Contains(bots, m.Bot) {
			bots = append(bots, oneLine(m.Bot))
		}
	}
	if len(bots) > 0 {
		label := "bot "
		if len(bots) > 1 || g.Count > 1 {
			label = "bots "
		}
		head += " — " + label + strings.Join(bots, ", ")
		if g.Count > len(bots) {
			head += ", …"
		}
	}
	return head
}

func memberLine(m groupMember) string {
	var parts []string
	if m.Bot != "" {
		parts = append(parts, "bot "+mono(m.Bot))
	}
	if m.Recording != "" {
		parts = append(parts, "recording "+mono(m.Recording))
	}
	if m.ID != "" && m.Object != "bot" && m.Object != "recording" {
		parts = append(parts, escape(oneLine(m.Object))+" "+mono(m.ID))
	}
	if len(parts) == 0 {
		return escape(oneLine(m.Event))
	}
	return strings.Join(parts, " · ")
}
