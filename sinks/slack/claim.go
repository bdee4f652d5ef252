package slack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	goslack "github.com/slack-go/slack"

	"github.com/relay-dev/relay/sinks"
)

// A thread's parent and a group's message are posted under a claim in the
// relay's state (the thread's lock, the group's flush claim) and recorded
// there once Slack has answered. A relay killed between the two leaves a
// message posted that the state does not know of; once the claim expires,
// the relay that takes it over would post it again: a second thread for the
// recording, a second message for the group. So each such message carries
// its claim in Slack's message metadata, and the relay taking over an
// expired claim first looks for that message in the channel's recent
// history (conversations.history: the channels:history scope, or
// groups:history for a private channel) and adopts it. When it cannot look
// (the scope is missing, or neither the lock nor this relay knows the
// channel's ID), it logs why and posts a new message.

// claimEventType is the metadata event type of a message posted under a
// claim; its payload holds the state key, the claim's time and the message
// id of the event that posted it.
const claimEventType = "relay_claim"

const (
	// claimLookBehind is how long before the claim the search starts: the
	// relays' clocks and Slack's differ.
	claimLookBehind = 5 * time.Minute
	// claimSearchPages bounds the history read, claimPageSize messages a
	// page, newest first (a page well within the 1 MiB read of an answer).
	claimSearchPages = 10
	claimPageSize    = 100
)

// claim names one posting of a message: the state key it is posted for and
// when the claim to post it was taken.
type claim struct {
	key string
	at  time.Time
}

func (c claim) stamp() string { return c.at.UTC().Format(time.RFC3339Nano) }

// option marks the message posted under c, for the event msgID.
func (c claim) option(msgID string) goslack.MsgOption {
	payload := map[string]any{"key": c.key, "claim": c.stamp()}
	if msgID != "" {
		payload["msg_id"] = msgID
	}
	return goslack.MsgOptionMetadata(goslack.SlackMetadata{EventType: claimEventType, EventPayload: payload})
}

// posted is a message Slack took under a claim: where it is and the event
// that posted it.
type posted struct {
	ts, channel, msgID string
}

// findClaimed looks in channel's recent history for the message posted
// under c; nil when there is none (the poster stopped before Slack took its
// message).
func (s *Sink) findClaimed(ctx context.Context, channel string, c claim) (*posted, error) {
	if channel == "" {
		return nil, errors.New("the channel's ID is not known yet (it is learnt from Slack's answer to a post, or given as channel)")
	}
	params := &goslack.GetConversationHistoryParameters{
		ChannelID: channel, Limit: claimPageSize, IncludeAllMetadata: true,
		Oldest: slackTime(c.at.Add(-claimLookBehind)),
	}
	want := c.stamp()
	for range claimSearchPages {
		att := &sinks.HTTPAttempt{Method: http.MethodPost, Target: s.apiMethod("conversations.history"), Timeout: s.timeout}
		page, err := s.api.GetConversationHistoryContext(att.Context(ctx), params)
		if err := s.apiError(ctx, att, "conversations.history", err); err != nil {
			return nil, err
		}
		for _, m := range page.Messages {
			md := m.Metadata
			if md.EventType == claimEventType && md.EventPayload["key"] == c.key && md.EventPayload["claim"] == want {
				id, _ := md.EventPayload["msg_id"].(string)
				return &posted{ts: m.Timestamp, channel: channel, msgID: id}, nil
			}
		}
		if !page.HasMore || page.ResponseMetaData.NextCursor == "" {
			return nil, nil
		}
		params.Cursor = page.ResponseMetaData.NextCursor
	}
	return nil, nil
}

// findOrphan is findClaimed for a relay taking over c, in channel or, ""
// there, the one this relay knows. A lookup that cannot succeed (a missing
// scope, the channel's ID unknown) is logged and reported as nothing found:
// the caller posts anew. Any other failure (Slack unavailable, a rate
// limit) is returned, for the caller to try again later rather than post a
// second message.
func (s *Sink) findOrphan(ctx context.Context, what, channel string, c claim) (*posted, error) {
	if channel == "" {
		channel = s.knownChannel()
	}
	p, err := s.findClaimed(ctx, channel, c)
	if err != nil && (channel == "" || sinks.IsPermanent(err)) {
		s.log.Warn("slack: could not look for the message of a relay that stopped while posting it; posting it again",
			"sink", s.name, "what", what, "err", err)
		return nil, nil
	}
	return p, err
}

// slackTime is t as a Slack timestamp ("1700000000.000100").
func slackTime(t time.Time) string {
	return fmt.Sprintf("%d.%06d", t.Unix(), t.Nanosecond()/1000)
}

// channelID matches a Slack conversation ID (public, private, direct).
var channelID = regexp.MustCompile(`^[CGD][A-Z0-9]{8,}$`)

// learnChannel records the channel ID Slack answered a post with.
func (s *Sink) learnChannel(id string) {
	if id != "" && s.chanID.Load() == nil {
		s.chanID.Store(&id)
	}
}

// knownChannel is the ID of the sink's channel, "" until the config gives
// one or Slack has answered a post.
func (s *Sink) knownChannel() string {
	if id := s.chanID.Load(); id != nil {
		return *id
	}
	return ""
}

// apiMethod is the URL of a Web API method, for error messages.
func (s *Sink) apiMethod(method string) string {
	return strings.TrimSuffix(s.endpoint, "chat.postMessage") + method
}
