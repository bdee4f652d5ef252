package sinks

import (
	"context"
	"errors"
)

// State is a small durable key-value store that the relay gives sinks
// (Env.State) for what must outlive one process: a Slack thread's parent
// message, the members of an open group. Relays sharing one NATS cluster
// share it. Entries expire on their own after the store's TTL; a sink does
// not rely on an entry older than that.
//
// Keys are strings of letters, digits and "-_=./"; a sink namespaces its
// keys under its own name. Revisions make updates safe between relays:
// Create fails with ErrStateExists when the key is there, Update with
// ErrStateConflict when the key changed since revision was read. Safe for
// concurrent use.
type State interface {
	// Get returns the key's value and revision, or ErrStateNotFound.
	Get(ctx context.Context, key string) (value []byte, revision uint64, err error)
	// Create stores value under a key that does not exist yet and returns
	// its revision, or ErrStateExists.
	Create(ctx context.Context, key string, value []byte) (revision uint64, err error)
	// Update replaces the value stored at revision and returns the new
	// revision, or ErrStateConflict when the key has moved on.
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	// Delete removes key if it is still at revision (any revision when
	// revision is 0), else fails with ErrStateConflict; a missing key is
	// not an error when revision is 0.
	Delete(ctx context.Context, key string, revision uint64) error
	// Keys lists the keys that start with prefix.
	Keys(ctx context.Context, prefix string) ([]string, error)
}

// Errors a State reports, for errors.Is.
var (
	ErrStateNotFound = errors.New("state: key not found")
	ErrStateExists   = errors.New("state: key exists")
	ErrStateConflict = errors.New("state: revision conflict")
)
