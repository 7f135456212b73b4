package registrytest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	tokenPath  = "/token"
	service    = "registrytest"
	basicRealm = `Basic realm="registrytest"`
)

// access is a set of actions a token grants on one repository.
type access uint8

const (
	pull access = 1 << iota
	push
)

func (a access) String() string {
	switch a {
	case pull:
		return "pull"
	case push:
		return "push"
	case pull | push:
		return "pull,push"
	}
	return ""
}

// grant is what one token allows until it expires.
type grant struct {
	expires time.Time
	repos   map[string]access
}

// tokenStore remembers the tokens the token endpoint issued.
type tokenStore struct {
	ttl time.Duration
	mu  sync.Mutex       // guards m
	m   map[string]grant // by opaque token
}

func newTokenStore(ttl time.Duration) *tokenStore {
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	return &tokenStore{ttl: ttl, m: map[string]grant{}}
}

func (s *tokenStore) issue(repos map[string]access) (tok string, g grant) {
	b := make([]byte, 24)
	rand.Read(b)
	tok = hex.EncodeToString(b)
	g = grant{expires: time.Now().Add(s.ttl), repos: repos}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[tok] = g
	return tok, g
}

func (s *tokenStore) lookup(tok string) (grant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.m[tok]
	if ok && !time.Now().Before(g.expires) {
		delete(s.m, tok)
		return grant{}, false
	}
	return g, ok
}

// ExpireTokens invalidates every token issued so far, as if they had all
// expired: clients must fetch new ones.
func (r *Registry) ExpireTokens() {
	r.tokens.mu.Lock()
	defer r.tokens.mu.Unlock()
	clear(r.tokens.m)
}

// authorize reports whether req may proceed; when not, it has written the
// refusal.
func (r *Registry) authorize(w http.ResponseWriter, req *http.Request, rq Request) bool {
	api := rq.Path == "/v2" || strings.HasPrefix(rq.Path, "/v2/")
	if !api || (!r.opts.Token && !r.opts.Basic) {
		return true
	}
	need := pull
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		need = push
	}
	if r.opts.Basic {
		user, pass, ok := req.BasicAuth()
		if !ok || !r.validUser(user, pass) {
			refuse(w, http.StatusUnauthorized, basicRealm, "UNAUTHORIZED", "authentication required")
			return false
		}
		if rq.Name != "" && r.permitted(user, rq.Name)&need != need {
			refuse(w, http.StatusForbidden, "", "DENIED", "requested access to the resource is denied")
			return false
		}
		return true
	}
	tok, ok := cutScheme(req.Header.Get("Authorization"), "Bearer")
	g, found := r.tokens.lookup(tok)
	if !ok || !found {
		errParam := ""
		if ok {
			errParam = "invalid_token"
		}
		refuse(w, http.StatusUnauthorized, r.bearerChallenge(rq.Name, need, errParam), "UNAUTHORIZED", "authentication required")
		return false
	}
	if rq.Name != "" && g.repos[rq.Name]&need != need {
		refuse(w, http.StatusUnauthorized, r.bearerChallenge(rq.Name, need, "insufficient_scope"), "UNAUTHORIZED", "authentication required")
		return false
	}
	return true
}

// cutScheme returns the credentials of an Authorization header using scheme.
func cutScheme(header, scheme string) (string, bool) {
	s, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(s, scheme) {
		return "", false
	}
	return strings.TrimSpace(rest), true
}

func (r *Registry) bearerChallenge(name string, need access, errParam string) string {
	c := fmt.Sprintf(`Bearer realm="%s%s",service="%s"`, r.URL(), tokenPath, service)
	if name != "" {
		c += fmt.Sprintf(`,scope="repository:%s:%s"`, name, need|pull)
	}
	if errParam != "" {
		c += fmt.Sprintf(`,error="%s"`, errParam)
	}
	return c
}

// refuse writes an OCI error response, with a challenge when one is given.
func refuse(w http.ResponseWriter, status int, challenge, code, msg string) {
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`+"\n", code, msg)
}

func (r *Registry) validUser(user, pass string) bool {
	want, ok := r.opts.Users[user]
	return ok && want == pass
}

// permitted is what user ("" for anonymous) may do on repository name:
// anyone pulls public repositories, known users also push to them; private
// repositories are for their listed users only.
func (r *Registry) permitted(user, name string) access {
	if users, private := r.opts.Private[name]; private {
		if user != "" && slices.Contains(users, user) {
			return pull | push
		}
		return 0
	}
	if user != "" {
		return pull | push
	}
	return pull
}

// serveToken is the token endpoint: GET with optional Basic credentials
// (the Docker token protocol) or POST with an OAuth2 password grant (what
// containerd tries first when it has credentials).
func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request) {
	var user, pass string
	var authed bool
	var scopes []string
	switch req.Method {
	case http.MethodGet:
		user, pass, authed = req.BasicAuth()
		scopes = req.URL.Query()["scope"]
	case http.MethodPost:
		if err := req.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		if gt := req.PostForm.Get("grant_type"); gt != "password" {
			tokenError(w, http.StatusBadRequest, "unsupported_grant_type")
			return
		}
		user, pass, authed = req.PostForm.Get("username"), req.PostForm.Get("password"), true
		scopes = req.PostForm["scope"]
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if s := req.FormValue("service"); s != "" && s != service {
		tokenError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	if authed && !r.validUser(user, pass) {
		w.Header().Set("WWW-Authenticate", basicRealm)
		tokenError(w, http.StatusUnauthorized, "invalid_grant")
		return
	}
	if !authed {
		user = ""
	}
	repos := map[string]access{}
	for _, field := range scopes {
		for _, s := range strings.Fields(field) {
			name, actions, ok := parseScope(s)
			if !ok {
				continue
			}
			repos[name] |= actions & r.permitted(user, name)
		}
	}
	tok, g := r.tokens.issue(repos)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(r.tokens.ttl / time.Second),
		"issued_at":    g.expires.Add(-r.tokens.ttl).UTC().Format(time.RFC3339),
	})
}

// parseScope reads "repository:<name>:<action>[,<action>]".
func parseScope(s string) (name string, a access, ok bool) {
	rest, ok := strings.CutPrefix(s, "repository:")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 {
		return "", 0, false
	}
	for act := range strings.SplitSeq(rest[i+1:], ",") {
		switch act {
		case "pull":
			a |= pull
		case "push":
			a |= push
		case "*":
			a |= pull | push
		}
	}
	return rest[:i], a, true
}

func tokenError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%q}`+"\n", code)
}
