package relay

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
)

// TestKVState checks sinks.State's contract on the real KV bucket: Create
// is a lock, Update a compare-and-set, Delete frees the key for Create.
func TestKVState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := openTestStore(ctx, t)
	defer store.close()
	st, err := (&kvState{store: store}).open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Get(ctx, "a.x"); !errors.Is(err, sinks.ErrStateNotFound) {
		t.Errorf("Get of a missing key: %v", err)
	}
	rev, err := st.Create(ctx, "a.x", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, "a.x", []byte("2")); !errors.Is(err, sinks.ErrStateExists) {
		t.Errorf("second Create: %v", err)
	}
	rev2, err := st.Update(ctx, "a.x", []byte("2"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(ctx, "a.x", []byte("3"), rev); !errors.Is(err, sinks.ErrStateConflict) {
		t.Errorf("Update at a stale revision: %v", err)
	}
	if v, r, err := st.Get(ctx, "a.x"); err != nil || string(v) != "2" || r != rev2 {
		t.Errorf("Get = %q, %d, %v; want 2 at %d", v, r, err, rev2)
	}
	if _, err := st.Create(ctx, "b.y", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if keys, err := st.Keys(ctx, "a."); err != nil || !slices.Equal(keys, []string{"a.x"}) {
		t.Errorf("Keys(a.) = %v, %v", keys, err)
	}
	if err := st.Delete(ctx, "a.x", rev); !errors.Is(err, sinks.ErrStateConflict) {
		t.Errorf("Delete at a stale revision: %v", err)
	}
	if err := st.Delete(ctx, "a.x", rev2); err != nil {
		t.Fatal(err)
	}
	if keys, err := st.Keys(ctx, "a."); err != nil || len(keys) != 0 {
		t.Errorf("Keys(a.) after Delete = %v, %v", keys, err)
	}
	if err := st.Delete(ctx, "a.x", 0); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	if _, err := st.Create(ctx, "a.x", []byte("again")); err != nil {
		t.Errorf("Create after Delete: %v", err)
	}
}
