package main

import "github.com/spf13/cobra"

func testCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "test [-c FILE] EVENT.json... | --cases CASES.yaml",
		Short: "Dry-run events through the rules and sinks (not available yet)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageErr("test: not available yet")
		},
	}
}
