package puller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// token is the Bearer token kept for repo, or "".
func (p *Puller) token(repo string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokens[repo]
}

// bearer reports whether a WWW-Authenticate challenge is a Bearer one.
func bearer(challenge string) bool {
	scheme, _, _ := strings.Cut(challenge, " ")
	return strings.EqualFold(scheme, "Bearer")
}

// maxTokenAnswer bounds a token endpoint's answer.
const maxTokenAnswer = 1 << 20

// authorize answers a Bearer challenge the anonymous way (the Docker token
// protocol: GET realm?service=&scope=) and keeps the token for repo.
func (p *Puller) authorize(ctx context.Context, repo, challenge string) error {
	_, params, _ := strings.Cut(challenge, " ")
	kv := parseParams(params)
	if kv["realm"] == "" {
		return fmt.Errorf("challenge %q names no realm", challenge)
	}
	q := url.Values{}
	if s := kv["service"]; s != "" {
		q.Set("service", s)
	}
	if s := kv["scope"]; s != "" {
		q.Set("scope", s)
	}
	realm, err := url.Parse(kv["realm"])
	if err != nil {
		return fmt.Errorf("challenge realm: %w", err)
	}
	realm.RawQuery = q.Encode()
	resp, err := p.send(ctx, http.MethodGet, realm.String(), "", "", "")
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("token: %w", refusal(http.MethodGet, repo, "", "", realm.String(), resp))
	}
	defer resp.Body.Close()
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenAnswer)).Decode(&tok); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	t := tok.Token
	if t == "" {
		t = tok.AccessToken
	}
	if t == "" {
		return errors.New("token: answer holds no token")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tokens == nil {
		p.tokens = map[string]string{}
	}
	p.tokens[repo] = t
	return nil
}

// parseParams reads the comma-separated key="value" pairs of a challenge.
func parseParams(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		s = strings.TrimLeft(s, " ,")
		key, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				break
			}
			val, s = rest[1:1+end], rest[2+end:]
		} else {
			val, s, _ = strings.Cut(rest, ",")
		}
		out[strings.ToLower(strings.TrimSpace(key))] = val
	}
	return out
}
