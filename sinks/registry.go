package sinks

import (
	"fmt"
	"sort"
)

// Factory builds a sink named name from its type-specific options: the keys
// of the sink's config block other than the common ones (type, concurrency,
// retry), after ${VAR} expansion. env is what the sink may use of its
// surroundings; its zero fields stand for their defaults (Env.WithDefaults).
//
// Unknown keys, missing or invalid values are errors; to report several
// problems at once, join them with errors.Join. Each problem's text starts
// with the option's key ("webhook_url: required") so the relay can prefix it
// with the sink's config path. Errors never contain secret values.
//
// Building a sink does no I/O: no request, no file or directory created or
// opened. `relay check` and every config reload build every configured sink
// (and close those they do not keep), so a Factory only validates and
// prepares; connections and files wait for the first Send.
type Factory func(name string, options map[string]any, env Env) (Sink, error)

// Type describes one kind of sink.
type Type struct {
	// New builds a sink of this type.
	New Factory
	// Concurrency is the default number of deliveries in flight for a sink
	// of this type when its config does not say (0: the relay's default).
	Concurrency int

	env Env // set by Registry.Lookup, for Build
}

// Build builds a sink of this type with New, giving it the Env of the
// Registry the Type came from (Lookup); a Type that did not come from a
// Registry gives the zero Env.
func (t Type) Build(name string, options map[string]any) (Sink, error) {
	return t.New(name, options, t.env)
}

// Registry maps a config "type" to its constructor, and holds the Env the
// sinks it builds are given. The zero value is empty, has the zero Env, and
// is ready to use; it is not safe for concurrent registration.
type Registry struct {
	types map[string]Type
	env   Env
}

// NewRegistry returns an empty Registry whose sinks are built with env.
func NewRegistry(env Env) *Registry {
	return &Registry{env: env}
}

// Register adds a sink type. It panics if name is empty or already taken:
// registration is wiring done once at start-up, and a clash is a bug.
func (r *Registry) Register(name string, t Type) {
	if name == "" || t.New == nil {
		panic("sinks: Register needs a name and a constructor")
	}
	if _, dup := r.types[name]; dup {
		panic(fmt.Sprintf("sinks: type %q registered twice", name))
	}
	if r.types == nil {
		r.types = make(map[string]Type)
	}
	r.types[name] = t
}

// Lookup returns the sink type registered under name, carrying the
// Registry's Env for Type.Build.
func (r *Registry) Lookup(name string) (Type, bool) {
	t, ok := r.types[name]
	if ok {
		t.env = r.env
	}
	return t, ok
}

// WithEnv returns a Registry holding the same types whose sinks are built
// with the Env edit makes of r's. The relay uses it to hand sinks what exists
// only once it runs (its state store, its metrics). r is not changed.
func (r *Registry) WithEnv(edit func(Env) Env) *Registry {
	return &Registry{types: r.types, env: edit(r.env)}
}

// Names lists the registered types, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
