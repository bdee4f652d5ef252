package main

import (
	"fmt"
	"io"

	"github.com/relay-dev/relay/relay"
)

// printProblems prints a config error one problem per line.
func printProblems(w io.Writer, err error) {
	for _, e := range relay.Problems(err) {
		fmt.Fprintln(w, e.Error())
	}
}
