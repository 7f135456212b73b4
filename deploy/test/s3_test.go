package deploytest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// bucketEnv is the part of a container's environment that configures the
// bucket tier: cacheyd's CACHEYD_S3_* variables and an access key.
func bucketEnv(env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if _, key := accessKeys[k]; key || strings.HasPrefix(k, "CACHEYD_S3_") {
			out[k] = v
		}
	}
	return out
}

// checkBucket checks that the bucket tier's variables are exactly want
// (none at all when want is empty: no bucket, no half-configured tier).
func checkBucket(t *testing.T, where string, env, want map[string]string) {
	t.Helper()
	got := bucketEnv(env)
	if maps.Equal(got, want) {
		return
	}
	show := func(m map[string]string) string {
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(&b, "\n  %s=%s", k, m[k])
		}
		return b.String()
	}
	t.Errorf("%s: the bucket tier's variables are%s\nwant%s", where, show(got), show(want))
}
