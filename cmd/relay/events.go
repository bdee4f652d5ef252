package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/relay-dev/relay/relay"
)

// eventsCommand is "relay events": the stored events of a running relay.
func eventsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Search, show and replay the stored events of a running relay",
	}
	c := adminCommand(cmd)
	cmd.AddCommand(eventsListCommand(c), eventsShowCommand(c), eventsReplayCommand(c))
	return cmd
}

// eventFilter is the selection flags the events commands share.
type eventFilter struct {
	since, until, where string
}

func (f *eventFilter) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.since, "since", "", "only events received since then: a duration back from now (24h) or an RFC 3339 time")
	cmd.Flags().StringVar(&f.until, "until", "", "only events received until then: a duration back from now or an RFC 3339 time")
	cmd.Flags().StringVar(&f.where, "where", "", "only events this expression matches (the rule environment, plus rules and sinks)")
}

func (f *eventFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"since": f.since, "until": f.until, "where": f.where} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func eventsListCommand(c *adminClient) *cobra.Command {
	var f eventFilter
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List stored events, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageErr("--limit: must not be negative")
			}
			events, err := listEvents(c, f.query(), limit)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONTo(cmd.OutOrStdout(), events)
			}
			return printEvents(cmd.OutOrStdout(), events)
		},
	}
	f.flags(cmd)
	cmd.Flags().IntVar(&limit, "limit", 50, "print at most this many (0: all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// listEvents pages through GET /api/v1/events until limit events (0: all).
func listEvents(c *adminClient, q url.Values, limit int) ([]relay.StoredEvent, error) {
	all := []relay.StoredEvent{}
	for {
		page := 1000
		if limit > 0 {
			page = min(page, limit-len(all))
		}
		q.Set("limit", strconv.Itoa(page))
		body, err := c.do(http.MethodGet, "/api/v1/events", q)
		if err != nil {
			return nil, err
		}
		var p struct {
			Events     []relay.StoredEvent `json:"events"`
			NextCursor string              `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, &exitError{code: 1, err: fmt.Errorf("admin API: %w", err)}
		}
		all = append(all, p.Events...)
		if p.NextCursor == "" || (limit > 0 && len(all) >= limit) {
			return all, nil
		}
		q.Set("cursor", p.NextCursor)
	}
}

func printEvents(w io.Writer, events []relay.StoredEvent) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED\tSOURCE\tEVENT\tMSG ID\tRULES\tSINKS")
	for _, e := range events {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.ReceivedAt.UTC().Format(time.RFC3339), e.Source, orDash(e.Event),
			e.MsgID, orDash(strings.Join(e.Rules, ",")), orDash(sinkStatuses(e.Sinks)))
	}
	return tw.Flush()
}

// sinkStatuses is "a:delivered,b:retrying", sinks sorted.
func sinkStatuses(sinks map[string]relay.SinkTrail) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(sinks)) {
		parts = append(parts, name+":"+sinks[name].Status)
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func eventsShowCommand(c *adminClient) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one stored event: payload, rules and each sink's delivery trail",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("show takes one event id")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := c.do(http.MethodGet, "/api/v1/events/"+url.PathEscape(args[0]), nil)
			if err != nil {
				return err
			}
			var e relay.StoredEvent
			if err := json.Unmarshal(body, &e); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("admin API: %w", err)}
			}
			if asJSON {
				return writeJSONTo(cmd.OutOrStdout(), e)
			}
			return printEvent(cmd.OutOrStdout(), e)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printEvent(w io.Writer, e relay.StoredEvent) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%d\n", e.ID)
	fmt.Fprintf(tw, "msg_id:\t%s\n", e.MsgID)
	fmt.Fprintf(tw, "source:\t%s\n", e.Source)
	fmt.Fprintf(tw, "event:\t%s\n", orDash(e.Event))
	fmt.Fprintf(tw, "received_at:\t%s\n", e.ReceivedAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "rules:\t%s\n", orDash(strings.Join(e.Rules, ", ")))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "sinks:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SINK\tSTATUS\tATTEMPTS\tLAST ATTEMPT\tLAST ERROR")
	for _, name := range slices.Sorted(maps.Keys(e.Sinks)) {
		st := e.Sinks[name]
		last := "-"
		if st.LastAttemptAt != nil {
			last = st.LastAttemptAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\n", name, st.Status, st.Attempts, last, orDash(truncateText(st.LastError, 100)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "payload:")
	return writeJSONTo(w, e.Payload)
}

func eventsReplayCommand(c *adminClient) *cobra.Command {
	var f eventFilter
	var sink string
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "replay --where EXPR --sink S",
		Short: "Deliver the stored events an expression matches to one sink again (backfill)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.where == "" || sink == "" {
				return usageErr("replay: --where and --sink are required (--where true replays every stored event)")
			}
			q := f.query()
			q.Set("sink", sink)
			if dryRun {
				q.Set("dry_run", "true")
			}
			body, err := c.do(http.MethodPost, "/api/v1/events/replay", q)
			if err != nil {
				return err
			}
			var rep relay.ReplayReport
			if err := json.Unmarshal(body, &rep); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("admin API: %w", err)}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSONTo(out, rep)
			}
			verb := "queued for delivery to"
			if rep.DryRun {
				verb = "would be delivered to"
			}
			fmt.Fprintf(out, "%d stored events %s %s\n", rep.Matched, verb, rep.Sink)
			if len(rep.IDs) > 0 {
				ids := make([]string, len(rep.IDs))
				for i, id := range rep.IDs {
					ids[i] = strconv.FormatUint(id, 10)
				}
				fmt.Fprintf(out, "ids: %s\n", strings.Join(ids, " "))
			}
			return nil
		},
	}
	f.flags(cmd)
	cmd.Flags().StringVar(&sink, "sink", "", "the sink to deliver to (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only count and list the events")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
