package main

import (
	"fmt"
	"io"
)

// printProblems prints a config error one problem per line.
func printProblems(w io.Writer, err error) {
	for _, e := range leaves(err) {
		fmt.Fprintln(w, e.Error())
	}
}

func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}
