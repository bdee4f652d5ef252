package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/relay-dev/relay/relay"
)

// adminClient talks to a running relay's admin API.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

func (c *adminClient) do(method, path string, query url.Values) ([]byte, error) {
	return c.send(method, path, query, nil)
}

// send is do with a JSON request body (nil: none). A 400 about a where
// expression is a usage error (exit 2).
func (c *adminClient) send(method, path string, query url.Values, body []byte) ([]byte, error) {
	u := strings.TrimRight(c.base, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if body != nil && err == nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err != nil {
		return nil, usageErr("--admin: %v", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &exitError{code: 1, err: fmt.Errorf("admin API: %w", err)}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &exitError{code: 1, err: fmt.Errorf("admin API: %w", err)}
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(answer, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(answer))
		}
		code := 1
		if resp.StatusCode == http.StatusBadRequest && strings.HasPrefix(e.Error, "where: ") {
			code = 2
		}
		return nil, &exitError{code: code, err: fmt.Errorf("admin API: %s: %s", resp.Status, e.Error)}
	}
	return answer, nil
}

// adminCommand is a command that talks to a running relay's admin API
// (--admin, --token or $RELAY_ADMIN_TOKEN), through the client it returns.
func adminCommand(cmd *cobra.Command) *adminClient {
	c := &adminClient{http: &http.Client{Timeout: 5 * time.Minute}}
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		if c.token == "" {
			c.token = os.Getenv("RELAY_ADMIN_TOKEN")
		}
		return nil
	}
	cmd.PersistentFlags().StringVar(&c.base, "admin", "http://127.0.0.1:9090", "the relay's admin URL")
	cmd.PersistentFlags().StringVar(&c.token, "token", "", "admin token (default: $RELAY_ADMIN_TOKEN)")
	return c
}

func dlqCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, replay and purge dead letters of a running relay",
	}
	c := adminCommand(cmd)

	var sink, where string
	var asJSON bool
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			all := []relay.DeadLetter{}
			q := url.Values{}
			if sink != "" {
				q.Set("sink", sink)
			}
			if where != "" {
				q.Set("where", where)
			}
			q.Set("limit", "1000")
			for {
				body, err := c.do(http.MethodGet, "/api/v1/dlq", q)
				if err != nil {
					return err
				}
				var page struct {
					DeadLetters []relay.DeadLetter `json:"dead_letters"`
					NextCursor  string             `json:"next_cursor"`
				}
				if err := json.Unmarshal(body, &page); err != nil {
					return &exitError{code: 1, err: fmt.Errorf("admin API: %w", err)}
				}
				all = append(all, page.DeadLetters...)
				if page.NextCursor == "" || (limit > 0 && len(all) >= limit) {
					break
				}
				q.Set("cursor", page.NextCursor)
			}
			if limit > 0 && len(all) > limit {
				all = all[:limit]
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSONTo(out, all)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSINK\tEVENT\tMSG ID\tATTEMPTS\tLAST ATTEMPT\tLAST ERROR")
			for _, d := range all {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Sink, d.Event, d.MsgID, d.Attempts,
					d.LastAttemptAt.Format(time.RFC3339), truncateText(d.LastError, 80))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&sink, "sink", "", "only this sink's dead letters")
	list.Flags().StringVar(&where, "where", "", "only the dead letters this expression matches (the rule names plus sink, last_error, attempts)")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	list.Flags().IntVar(&limit, "limit", 0, "print at most this many (0: all)")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one dead letter with its payload",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("show takes one dead-letter id")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := c.do(http.MethodGet, "/api/v1/dlq/"+url.PathEscape(args[0]), nil)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := json.Indent(&buf, body, "", "  "); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("admin API: %w", err)}
			}
			_, err = buf.WriteTo(cmd.OutOrStdout())
			return err
		},
	}

	replay := bulkCommand(c, "replay", "replayed", "Put dead letters back for delivery with a fresh attempt count",
		http.MethodPost, func(id string) string { return "/api/v1/dlq/" + url.PathEscape(id) + "/replay" }, "/api/v1/dlq/replay")
	purge := bulkCommand(c, "purge", "purged", "Drop dead letters",
		http.MethodDelete, func(id string) string { return "/api/v1/dlq/" + url.PathEscape(id) }, "/api/v1/dlq")
	cmd.AddCommand(list, show, replay, purge)
	return cmd
}

// bulkCommand builds "replay" and "purge": by ids, or --all or --where
// EXPR [--sink S].
func bulkCommand(c *adminClient, name, done, short, method string, onePath func(string) string, allPath string) *cobra.Command {
	var all bool
	var sink, where string
	cmd := &cobra.Command{
		Use:   name + " ID...|--all|--where EXPR [--sink S]",
		Short: short,
		RunE: func(cmd *cobra.Command, ids []string) error {
			many := all || where != ""
			switch {
			case all && where != "":
				return usageErr("%s: give --all or --where, not both", name)
			case many && len(ids) > 0:
				return usageErr("%s: give ids or --all, not both", name)
			case !many && len(ids) == 0:
				return usageErr("%s: give dead-letter ids or --all", name)
			case !many && sink != "":
				return usageErr("%s: --sink goes with --all", name)
			}
			out := cmd.OutOrStdout()
			if many {
				q := url.Values{}
				if sink != "" {
					q.Set("sink", sink)
				}
				if where != "" {
					q.Set("where", where)
				}
				body, err := c.do(method, allPath, q)
				if err != nil {
					return err
				}
				fmt.Fprintln(out, strings.TrimSpace(string(body)))
				return nil
			}
			failed := false
			for _, id := range ids {
				if _, err := c.do(method, onePath(id), nil); err != nil {
					fmt.Fprintf(out, "%s: %v\n", id, err)
					failed = true
					continue
				}
				fmt.Fprintf(out, "%s: %s\n", id, done)
			}
			if failed {
				return errFailed
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter (of --sink, if given)")
	cmd.Flags().StringVar(&where, "where", "", "every dead letter this expression matches (of --sink, if given)")
	cmd.Flags().StringVar(&sink, "sink", "", "with --all or --where: only this sink's dead letters")
	return cmd
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func truncateText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
