package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	svix "github.com/svix/svix-webhooks/go"
)

func sendCommand() *cobra.Command {
	var (
		url, secret string
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "send --url URL --secret whsec_... EVENT.json...",
		Short: "Sign event files with the Svix scheme and POST them (for trying a relay out)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("send needs at least one event file")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, files []string) error {
			if url == "" || secret == "" {
				return usageErr("send needs --url and --secret")
			}
			wh, err := svix.NewWebhook(secret)
			if err != nil || !strings.HasPrefix(secret, "whsec_") {
				return usageErr("--secret: want whsec_ followed by base64")
			}
			client := &http.Client{Timeout: timeout}
			out := cmd.OutOrStdout()
			failed := false
			for _, f := range files {
				status, body, err := sendOne(client, wh, url, f)
				if err != nil {
					fmt.Fprintf(out, "%s: error: %v\n", f, err)
					failed = true
					continue
				}
				fmt.Fprintf(out, "%s: %d %s\n", f, status, strings.TrimSpace(body))
				if status < 200 || status > 299 {
					failed = true
				}
			}
			if failed {
				return errFailed
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "the relay's webhook URL (e.g. http://127.0.0.1:8080/webhooks/recall)")
	cmd.Flags().StringVar(&secret, "secret", "", "the source's signing secret (whsec_...)")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Second, "per-request timeout")
	return cmd
}

// sendOne signs the file's bytes with a fresh message id and the current
// time, POSTs them and returns the status and (a prefix of) the answer.
func sendOne(client *http.Client, wh *svix.Webhook, url, file string) (int, string, error) {
	body, err := os.ReadFile(file)
	if err != nil {
		return 0, "", err
	}
	id := newMsgID()
	now := time.Now()
	sig, err := wh.Sign(id, now, body)
	if err != nil {
		return 0, "", fmt.Errorf("sign: %w", err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(answer), nil
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newMsgID returns a Svix-style message id: "msg_" and 27 random base62 characters.
func newMsgID() string {
	b := make([]byte, 27)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = base62[int(b[i])%len(base62)]
	}
	return "msg_" + string(b)
}
