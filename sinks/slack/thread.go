package slack

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goslack "github.com/slack-go/slack"

	"github.com/relay-dev/relay/sinks"
)

// A thread_by sink keeps one Slack thread per key (for example per
// recording): the first event of a key posts a parent message, later events
// reply in its thread and update the parent in place, so that the parent
// always shows the latest state of every object of the key.
//
// The key's thread lives in the relay's durable state (sinks.State), shared
// by every relay on the cluster: threadState, JSON, under threadKey. An
// entry with no ts is a lock: the relay that created it is posting the
// parent; others wait for it (a retryable error) unless it is older than
// parentLockTTL, when the poster is taken to have died and the lock is taken
// over: by adopting the parent the poster had posted, if Slack has it (see
// claim.go), else by posting the parent anew.

// parentLockTTL is how long a thread's parent may be "being posted" before
// another relay takes over.
const parentLockTTL = time.Minute

// maxReplied bounds the message ids a thread remembers to not reply twice
// to one event when its delivery is retried.
const maxReplied = 64

// threadState is a thread as stored.
type threadState struct {
	// TS is the parent message's timestamp, "" while it is being posted.
	TS string `json:"ts,omitempty"`
	// Channel is the channel ID Slack answered with (chat.update wants the
	// ID, the config may name the channel). A lock holds it when the
	// poster knew it, for a relay taking over to look for the parent.
	Channel string `json:"channel,omitempty"`
	// LockedAt is when the parent's posting started.
	LockedAt time.Time `json:"locked_at"`
	// Key is the thread key, as thread_by gave it.
	Key string `json:"key"`
	// Objects are the key's objects, in order of first appearance.
	Objects []objectState `json:"objects"`
	// Replied lists the message ids of the latest events replied to.
	Replied []string `json:"replied,omitempty"`
	// Recording and Bot are the ids the key's events name, for the
	// parent's first line.
	Recording string `json:"recording,omitempty"`
	Bot       string `json:"bot,omitempty"`
}

// objectState is the latest known state of one object of a thread.
type objectState struct {
	Object    string    `json:"object"` // "recording", "bot", "transcript", ...
	ID        string    `json:"id"`
	Event     string    `json:"event"`
	Status    string    `json:"status"`
	Code      string    `json:"code,omitempty"`
	SubCode   string    `json:"sub_code,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// objectOf is the object d is about.
func objectOf(d sinks.Delivery) objectState {
	o := objectState{
		Object:    str(d.Data, "object"),
		Event:     d.Event,
		Status:    str(d.Data, "status"),
		Code:      str(d.Data, "code"),
		SubCode:   str(d.Data, "sub_code"),
		Reason:    str(d.Data, "sub_code_reason"),
		UpdatedAt: timeOf(d.Data["updated_at"]),
	}
	if o.Event == "" {
		o.Event = str(d.Data, "event")
	}
	switch o.Object {
	case "recording", "bot":
		o.ID = ref(d.Data, o.Object).id
	default:
		o.ID = ref(d.Data, "media").id
	}
	return o
}

// add records d's object in t (see merge) and the recording and bot it
// names; it reports whether the parent's content changed.
func (t *threadState) add(d sinks.Delivery) bool {
	changed := false
	if id := ref(d.Data, "recording").id; id != "" && t.Recording == "" {
		t.Recording, changed = id, true
	}
	if id := ref(d.Data, "bot").id; id != "" && t.Bot == "" {
		t.Bot, changed = id, true
	}
	return t.merge(objectOf(d)) || changed
}

// merge records o in t and reports whether t changed. An object's state
// only moves forward: an event older (by updated_at) than the one recorded
// leaves it as it is.
func (t *threadState) merge(o objectState) bool {
	for i, cur := range t.Objects {
		if cur.Object != o.Object || cur.ID != o.ID {
			continue
		}
		if o.UpdatedAt.Before(cur.UpdatedAt) || cur == o {
			return false
		}
		t.Objects[i] = o
		return true
	}
	t.Objects = append(t.Objects, o)
	return true
}

// replied reports whether t replied to msgID already; remember records it.
func (t *threadState) replied(msgID string) bool {
	return msgID != "" && slices.Contains(t.Replied, msgID)
}

func (t *threadState) remember(msgID string) {
	if msgID == "" || t.replied(msgID) {
		return
	}
	t.Replied = append(t.Replied, msgID)
	if len(t.Replied) > maxReplied {
		t.Replied = t.Replied[len(t.Replied)-maxReplied:]
	}
}

// threadKey is the state key of the thread key of sink name.
func threadKey(name, key string) string {
	enc := base64.RawURLEncoding
	return "slack.thread." + enc.EncodeToString([]byte(name)) + "." + enc.EncodeToString([]byte(key))
}

// sendThreaded delivers d in the thread of its key.
func (s *Sink) sendThreaded(ctx context.Context, d sinks.Delivery, key string) error {
	st, err := s.state(ctx)
	if err != nil {
		return err
	}
	skey := threadKey(s.name, key)
	t, rev, err := s.loadThread(ctx, st, skey, key)
	if err != nil {
		return err
	}
	if t.TS == "" {
		return s.postParent(ctx, st, skey, t, rev, d)
	}
	return s.reply(ctx, st, skey, t, rev, d)
}

// state opens the relay's sink state.
func (s *Sink) state(ctx context.Context) (sinks.State, error) {
	if s.openState == nil {
		return nil, sinks.Permanent(errors.New("slack thread_by: the relay gives this sink no state store"))
	}
	st, err := s.openState(ctx)
	if err != nil {
		return nil, fmt.Errorf("slack thread_by: %w", err)
	}
	return st, nil
}

// loadThread reads the key's thread, or takes the lock to post its parent:
// a returned state without TS is locked by this call at rev.
func (s *Sink) loadThread(ctx context.Context, st sinks.State, skey, key string) (threadState, uint64, error) {
	lock := threadState{Key: key, LockedAt: s.now().UTC(), Channel: s.knownChannel()}
	raw, rev, err := st.Get(ctx, skey)
	switch {
	case errors.Is(err, sinks.ErrStateNotFound):
		rev, err = st.Create(ctx, skey, stateJSON(lock))
		if errors.Is(err, sinks.ErrStateExists) {
			return threadState{}, 0, errParentPending
		}
		if err != nil {
			return threadState{}, 0, err
		}
		return lock, rev, nil
	case err != nil:
		return threadState{}, 0, err
	}
	var t threadState
	if err := json.Unmarshal(raw, &t); err != nil {
		// A corrupt entry would block the key for good: start over.
		s.log.Warn("slack thread state unreadable; starting a new thread", "sink", s.name, "err", err)
		t = threadState{}
	}
	if t.TS != "" {
		return t, rev, nil
	}
	if !t.LockedAt.IsZero() && s.now().Sub(t.LockedAt) < parentLockTTL {
		return threadState{}, 0, errParentPending
	}
	// The relay posting the parent gave up or died. Slack may have its
	// parent: adopt it, or take the lock over to post one.
	if !t.LockedAt.IsZero() {
		if adopted, arev, ok, err := s.adoptParent(ctx, st, skey, key, t, rev); err != nil || ok {
			return adopted, arev, err
		}
	}
	lock.Objects = t.Objects
	rev, err = st.Update(ctx, skey, stateJSON(lock), rev)
	if errors.Is(err, sinks.ErrStateConflict) {
		return threadState{}, 0, errParentPending
	}
	if err != nil {
		return threadState{}, 0, err
	}
	return lock, rev, nil
}

// adoptParent looks in Slack for the parent posted under t, a lock whose
// poster stopped, and records it as the key's parent at rev. ok is false
// when Slack has none (or cannot be asked, see findOrphan).
func (s *Sink) adoptParent(ctx context.Context, st sinks.State, skey, key string, t threadState, rev uint64) (_ threadState, _ uint64, ok bool, _ error) {
	p, err := s.findOrphan(ctx, "thread parent", t.Channel, claim{skey, t.LockedAt})
	if p == nil || err != nil {
		return threadState{}, 0, false, err
	}
	t.TS, t.Channel, t.LockedAt, t.Key = p.ts, p.channel, time.Time{}, key
	t.remember(p.msgID) // its event, redelivered, updates the parent without a reply
	rev, err = st.Update(ctx, skey, stateJSON(t), rev)
	if errors.Is(err, sinks.ErrStateConflict) {
		err = errParentPending // another relay took the key over
	}
	if err != nil {
		return threadState{}, 0, false, err
	}
	s.log.Info("slack thread parent adopted from a relay that stopped while posting it", "sink", s.name, "ts", p.ts)
	return t, rev, true, nil
}

// errParentPending asks the relay to retry: another delivery is posting
// the thread's parent.
var errParentPending = sinks.RetryAfter(errors.New("slack thread_by: the thread's parent message is being posted"), time.Second)

// postParent posts the parent message of a new thread and records it.
func (s *Sink) postParent(ctx context.Context, st sinks.State, skey string, t threadState, rev uint64, d sinks.Delivery) error {
	t.add(d)
	t.remember(d.MsgID)
	channel, ts, err := s.post(ctx, "post", parentMessage(t), "", claim{skey, t.LockedAt}.option(d.MsgID))
	if err != nil {
		// Release the lock so that the retry (or another relay) posts.
		_ = st.Delete(context.WithoutCancel(ctx), skey, rev)
		return err
	}
	t.TS, t.Channel, t.LockedAt = ts, channel, time.Time{}
	if err := recordParent(ctx, st, skey, t, rev); err != nil {
		// The parent is posted but unrecorded: the next event of the key
		// starts another thread once the lock expires. Nothing to retry.
		s.log.Warn("slack thread parent posted but not recorded", "sink", s.name, "err", err)
	}
	return nil
}

// recordParentFor bounds how long a posted parent's recording is retried.
const recordParentFor = 30 * time.Second

// recordParent stores t, whose parent is posted, over the lock at rev. A
// store error is tried again (with a backoff, for up to recordParentFor or
// until ctx is done): it is most often a NATS leader election, over in
// seconds, and giving up would start a second thread for the key. A
// conflict after a failed try is the failed try's own write, stored but
// unanswered, when the stored thread has t's parent.
func recordParent(ctx context.Context, st sinks.State, skey string, t threadState, rev uint64) error {
	ctx, cancel := context.WithTimeout(ctx, recordParentFor)
	defer cancel()
	wait := 100 * time.Millisecond
	for tried := false; ; tried = true {
		_, err := st.Update(ctx, skey, stateJSON(t), rev)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, sinks.ErrStateConflict):
			if tried {
				if raw, _, gerr := st.Get(ctx, skey); gerr == nil {
					var cur threadState
					if json.Unmarshal(raw, &cur) == nil && cur.TS == t.TS {
						return nil
					}
				}
			}
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// reply posts d in the thread, records its object and updates the parent
// when the thread's state moved.
func (s *Sink) reply(ctx context.Context, st sinks.State, skey string, t threadState, rev uint64, d sinks.Delivery) error {
	// A retry of an event replied to already may have failed to update
	// the parent: update it again.
	retry := t.replied(d.MsgID)
	if !retry {
		msg, err := s.message(d)
		if err != nil {
			return err
		}
		if _, _, err := s.post(ctx, "reply", msg, t.TS); err != nil {
			return err
		}
	}
	for {
		changed := t.add(d)
		t.remember(d.MsgID)
		_, err := st.Update(ctx, skey, stateJSON(t), rev)
		if errors.Is(err, sinks.ErrStateConflict) {
			if t, rev, err = s.reload(ctx, st, skey); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if !changed && !retry {
			return nil
		}
		return s.update(ctx, t.Channel, t.TS, parentMessage(t))
	}
}

// reload reads the thread again after losing a race to update it.
func (s *Sink) reload(ctx context.Context, st sinks.State, skey string) (threadState, uint64, error) {
	raw, rev, err := st.Get(ctx, skey)
	if err != nil {
		return threadState{}, 0, err
	}
	var t threadState
	if err := json.Unmarshal(raw, &t); err != nil || t.TS == "" {
		return threadState{}, 0, fmt.Errorf("slack thread_by: thread state changed under us")
	}
	return t, rev, nil
}

func stateJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings and times
	}
	return b
}

// parentMessage is a thread's parent: what is wrong and for whom on the
// first line, then one line per object with its latest state, newest
// failure first in the notification text. It fits a phone screen: nothing
// important is below Slack's "show more" fold.
func parentMessage(t threadState) payload {
	head := headline(t)
	lines := make([]string, 0, len(t.Objects))
	for _, o := range t.Objects {
		lines = append(lines, objectLine(o))
	}
	blocks := []goslack.Block{
		goslack.NewSectionBlock(mrkdwn(truncate("*"+escape(head)+"*", maxSectionText)), nil, nil),
		goslack.NewSectionBlock(mrkdwn(truncate(strings.Join(lines, "\n"), maxSectionText)), nil, nil),
	}
	if latest := latestUpdate(t); !latest.IsZero() {
		u := latest.UTC()
		blocks = append(blocks, goslack.NewContextBlock("", mrkdwn(truncate(fmt.Sprintf("thread %s · updated <!date^%d^{date_short_pretty} {time_secs}|%s>",
			mono(t.Key), u.Unix(), u.Format("2006-01-02 15:04:05 UTC")), maxContextText))))
	} else {
		blocks = append(blocks, goslack.NewContextBlock("", mrkdwn(truncate("thread "+mono(t.Key), maxContextText))))
	}
	return payload{Text: truncate(escape(head), maxText), Blocks: blocks}
}

// headline says what failed and for whom: the latest failed object, else
// the latest event, with the owner of the thread (the recording or bot).
func headline(t threadState) string {
	var pick *objectState
	for i := range t.Objects {
		o := &t.Objects[i]
		if !failed(*o) {
			continue
		}
		if pick == nil || !o.UpdatedAt.Before(pick.UpdatedAt) {
			pick = o
		}
	}
	ok := pick == nil
	if ok {
		for i := range t.Objects {
			o := &t.Objects[i]
			if pick == nil || !o.UpdatedAt.Before(pick.UpdatedAt) {
				pick = o
			}
		}
	}
	if pick == nil {
		return oneLine(t.Key)
	}
	mark := "✗"
	if ok {
		mark = statusMark(*pick)
	}
	head := mark + " " + oneLine(pick.Object) + " " + oneLine(pick.Status)
	if pick.SubCode != "" {
		head += ": " + oneLine(pick.SubCode)
	}
	return head + " — " + owner(t)
}

// owner names whom the thread is about: its recording, else its bot, else
// its key.
func owner(t threadState) string {
	switch {
	case t.Recording != "":
		return "recording " + oneLine(t.Recording)
	case t.Bot != "":
		return "bot " + oneLine(t.Bot)
	}
	return oneLine(t.Key)
}

// objectLine is one object's state: "✓ transcript done",
// "✗ transcript failed — zoom_captions_failure: reason".
func objectLine(o objectState) string {
	line := statusMark(o) + " " + escape(oneLine(o.Object)) + " " + escape(oneLine(o.Status))
	if o.ID != "" {
		line += " " + mono(o.ID)
	}
	switch {
	case o.SubCode != "":
		line += " — " + mono(o.SubCode)
		if o.Reason != "" {
			line += ": " + escape(oneLine(o.Reason))
		}
	case failed(o) && o.Code != "":
		line += " — " + mono(o.Code)
	}
	return line
}

func failed(o objectState) bool {
	return o.Status == "failed" || o.Status == "fatal" || strings.Contains(o.Status, "error")
}

func statusMark(o objectState) string {
	switch {
	case failed(o):
		return "✗"
	case o.Status == "done" || o.Status == "completed" || o.Status == "ready":
		return "✓"
	}
	return "•"
}

func latestUpdate(t threadState) time.Time {
	var latest time.Time
	for _, o := range t.Objects {
		if o.UpdatedAt.After(latest) {
			latest = o.UpdatedAt
		}
	}
	return latest
}
