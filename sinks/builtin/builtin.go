// Package builtin wires the sink types the relay ships, under the config
// types "slack", "http" and "file". The relay binary and the tests that
// need the real sinks use it alike, so a new built-in sink is one line here.
package builtin

import (
	"github.com/relay-dev/relay/sinks"
	"github.com/relay-dev/relay/sinks/filesink"
	"github.com/relay-dev/relay/sinks/httpsink"
	"github.com/relay-dev/relay/sinks/slack"
)

// Registry returns a new Registry holding every built-in sink type, whose
// sinks are built with env.
func Registry(env sinks.Env) *sinks.Registry {
	reg := sinks.NewRegistry(env)
	reg.Register("slack", slack.Type)
	reg.Register("http", httpsink.Type)
	reg.Register("file", filesink.Type)
	return reg
}
