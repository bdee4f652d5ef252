package relay

import (
	"sync"
	"sync/atomic"
	"time"
)

// seenIDs holds the message ids trimmed from the events stream while
// still inside the dedupe window: after a restart JetStream's own duplicate
// window knows only the events still stored (see docs/design.md). Ingest
// consults it before the events stream. It is read from RELAY_IDS at start
// and follows it while the relay runs (history.go); expire drops the ids
// that left the window.
type seenIDs struct {
	size atomic.Int64 // len(ids): ingest skips the lock while it is 0

	mu    sync.RWMutex
	ids   map[string]int64 // "<source>:<msg id>" -> received, Unix ns
	order []seenEntry      // by received time, oldest first; expire walks it
}

type seenEntry struct {
	key string
	at  int64
}

// add records key as received at (Unix ns).
func (s *seenIDs) add(key string, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = make(map[string]int64)
	}
	if old, ok := s.ids[key]; ok && old >= at {
		return
	}
	s.ids[key] = at
	s.order = append(s.order, seenEntry{key, at})
	s.size.Store(int64(len(s.ids)))
}

// has reports whether source's msgID is held.
func (s *seenIDs) has(source, msgID string) bool {
	if s == nil || s.size.Load() == 0 {
		return false
	}
	s.mu.RLock()
	_, ok := s.ids[source+":"+msgID]
	s.mu.RUnlock()
	return ok
}

// expire drops the ids received before cutoff.
func (s *seenIDs) expire(cutoff time.Time) {
	c := cutoff.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for ; i < len(s.order) && s.order[i].at < c; i++ {
		e := s.order[i]
		if at, ok := s.ids[e.key]; ok && at == e.at {
			delete(s.ids, e.key)
		}
	}
	s.order = s.order[i:]
	if len(s.order) == 0 {
		s.order = nil
	}
	s.size.Store(int64(len(s.ids)))
}

// len is the number of ids held.
func (s *seenIDs) len() int { return int(s.size.Load()) }
