package slack

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/relay-dev/relay/sinks"
)

// previewTS stands for the ts Slack gives a thread's parent or a group's
// message, in previews.
const previewTS = "(ts of the first message)"

// previewSim is the memory of a thread_by or group_by sink's previews, so
// that `relay test` with a sequence of events shows the posts, replies and
// updates they would make in turn. It lives in process only.
type previewSim struct {
	mu      sync.Mutex
	threads map[string]*threadState
	groups  map[string]*groupState
}

// previewSequence previews d as following the deliveries previewed before.
func (s *Sink) previewSequence(d sinks.Delivery) (sinks.Preview, error) {
	s.sim.mu.Lock()
	defer s.sim.mu.Unlock()
	if s.groupBy != nil {
		return s.previewGroup(d)
	}
	key, err := s.threadBy(d.Data)
	if err != nil {
		return sinks.Preview{}, fmt.Errorf("thread_by: %w", err)
	}
	if key == "" {
		msg, err := s.message(d)
		if err != nil {
			return sinks.Preview{}, err
		}
		return s.previewCall("chat.postMessage", msg)
	}
	if s.sim.threads == nil {
		s.sim.threads = map[string]*threadState{}
	}
	t, ok := s.sim.threads[key]
	if !ok {
		t = &threadState{Key: key, TS: previewTS}
		t.add(d)
		s.sim.threads[key] = t
		return s.previewCall("chat.postMessage", parentMessage(*t))
	}
	msg, err := s.message(d)
	if err != nil {
		return sinks.Preview{}, err
	}
	msg.ThreadTS = t.TS
	p, err := s.previewCall("chat.postMessage", msg)
	if err != nil || !t.add(d) {
		return p, err
	}
	parent := parentMessage(*t)
	parent.TS = t.TS
	update, err := s.previewCall("chat.update", parent)
	p.Then = append(p.Then, update)
	return p, err
}

// previewGroup shows the group's message as it would read with d: posted
// for the first member (after group_wait), updated for the next ones (at
// most every group_interval, with every member that joined meanwhile).
func (s *Sink) previewGroup(d sinks.Delivery) (sinks.Preview, error) {
	values, err := s.groupValues(d)
	if err != nil {
		return sinks.Preview{}, err
	}
	key, _ := json.Marshal(values)
	if s.sim.groups == nil {
		s.sim.groups = map[string]*groupState{}
	}
	g, ok := s.sim.groups[string(key)]
	if !ok {
		g = &groupState{Values: values}
		s.sim.groups[string(key)] = g
	}
	g.add(memberOf(d), "", d.ReceivedAt)
	msg := groupMessage(*g)
	if !ok {
		return s.previewCall("chat.postMessage", msg)
	}
	msg.TS = previewTS
	return s.previewCall("chat.update", msg)
}
