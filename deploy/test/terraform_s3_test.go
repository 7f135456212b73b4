package deploytest

import (
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	corev1 "k8s.io/api/core/v1"
)

// s3Blocks are the example's bucket tier, each made only when asked for:
// "enable" is made with enable_s3_tier, "irsa" and "pod-identity" with it
// and that s3_credentials.
var s3Blocks = map[string]string{
	"aws_s3_bucket.cache":                         "enable",
	"aws_s3_bucket_public_access_block.cache":     "enable",
	"aws_s3_bucket_ownership_controls.cache":      "enable",
	"aws_s3_bucket_lifecycle_configuration.cache": "enable",
	"data.aws_iam_policy_document.cacheyd_s3":     "enable",
	"aws_iam_policy.cacheyd_s3":                   "enable",
	"data.aws_iam_policy_document.cacheyd_assume": "enable",
	"aws_iam_role.cacheyd_s3":                     "enable",
	"aws_iam_role_policy_attachment.cacheyd_s3":   "enable",
	"data.aws_eks_cluster.this":                   "irsa",
	"data.aws_iam_openid_connect_provider.this":   "irsa",
	"aws_eks_pod_identity_association.cacheyd":    "pod-identity",
}

// block is a resource ("type.name") or a data source ("data.type.name").
func (m *terraformModule) block(t *testing.T, name string) *hclsyntax.Body {
	t.Helper()
	b, ok := m.resources[name]
	if rest, isData := strings.CutPrefix(name, "data."); isData {
		b, ok = m.data[rest]
	}
	if !ok {
		t.Fatalf("no %s", name)
	}
	return b
}

// value evaluates an attribute of body.
func value(t *testing.T, where string, body *hclsyntax.Body, attr string, ctx *hcl.EvalContext) cty.Value {
	t.Helper()
	a, ok := body.Attributes[attr]
	if !ok {
		t.Fatalf("%s has no %s", where, attr)
	}
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s %s: %s", where, attr, diags.Error())
	}
	return v
}

// nested is the one block of type typ in body.
func nested(t *testing.T, where string, body *hclsyntax.Body, typ string) *hclsyntax.Body {
	t.Helper()
	var found []*hclsyntax.Body
	for _, b := range body.Blocks {
		if b.Type == typ {
			found = append(found, b.Body)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d %s blocks, want 1", where, len(found), typ)
	}
	return found[0]
}

// TestTerraformS3 checks the example's bucket tier without AWS: nothing of
// it by default; with enable_s3_tier, a private bucket whose lifecycle rule
// expires cacheyd's objects and aborts abandoned multipart uploads, a
// policy that reads and uploads under the prefix and never deletes, and a
// role that trusts cacheyd's service account alone.
func TestTerraformS3(t *testing.T) {
	mod := parseTerraform(t)
	for _, tt := range []struct {
		name string
		set  map[string]cty.Value
		made map[string]bool // which of s3Blocks' conditions hold
	}{
		{"defaults", nil, map[string]bool{}},
		{"irsa", map[string]cty.Value{"enable_s3_tier": cty.True}, map[string]bool{"enable": true, "irsa": true}},
		{"pod identity", map[string]cty.Value{"enable_s3_tier": cty.True, "s3_credentials": cty.StringVal("pod-identity")},
			map[string]bool{"enable": true, "pod-identity": true}},
	} {
		ctx := mod.evalCtx(t, tt.set)
		for name, when := range s3Blocks {
			n := value(t, name, mod.block(t, name), "count", ctx)
			if want := map[bool]int64{true: 1, false: 0}[tt.made[when]]; !n.Equals(cty.NumberIntVal(want)).True() {
				t.Errorf("%s: %s count %s, want %d", tt.name, name, n.GoString(), want)
			}
		}
	}

	ctx := mod.evalCtx(t, map[string]cty.Value{"enable_s3_tier": cty.True})
	pab := mod.block(t, "aws_s3_bucket_public_access_block.cache")
	for _, a := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
		if v := value(t, "public access block", pab, a, ctx); !v.True() {
			t.Errorf("public access block: %s is not true", a)
		}
	}

	// The lifecycle rule: cacheyd's prefix, expiry after s3_expire_days
	// (30 by default), abandoned multipart uploads after a day.
	rule := nested(t, "lifecycle", mod.block(t, "aws_s3_bucket_lifecycle_configuration.cache"), "rule")
	if v := value(t, "lifecycle rule", rule, "status", ctx); v.AsString() != "Enabled" {
		t.Errorf("lifecycle rule status %s", v.AsString())
	}
	if v := value(t, "lifecycle filter", nested(t, "lifecycle rule", rule, "filter"), "prefix", ctx); v.AsString() != "cacheyd/" {
		t.Errorf("lifecycle filter prefix %q, want s3_prefix (cacheyd/)", v.AsString())
	}
	if v := value(t, "expiration", nested(t, "lifecycle rule", rule, "expiration"), "days", ctx); !v.Equals(cty.NumberIntVal(30)).True() {
		t.Errorf("expiration days %s, want s3_expire_days (30)", v.GoString())
	}
	if v := value(t, "abort", nested(t, "lifecycle rule", rule, "abort_incomplete_multipart_upload"), "days_after_initiation", ctx); !v.Equals(cty.NumberIntVal(1)).True() {
		t.Errorf("abort_incomplete_multipart_upload after %s days, want 1", v.GoString())
	}

	// The policy: objects under the prefix, and the bucket's listing for
	// honest 404s; no delete, no other action.
	src := func(e hclsyntax.Expression) string {
		r := e.Range()
		for name, b := range mod.src {
			if strings.HasSuffix(name, r.Filename) || name == r.Filename {
				return string(r.SliceBytes(b))
			}
		}
		return ""
	}
	actions := map[string][]string{}
	for _, b := range mod.block(t, "data.aws_iam_policy_document.cacheyd_s3").Blocks {
		if b.Type != "statement" {
			continue
		}
		sid := value(t, "statement", b.Body, "sid", ctx).AsString()
		for _, v := range value(t, sid, b.Body, "actions", ctx).AsValueSlice() {
			actions[sid] = append(actions[sid], v.AsString())
		}
		res := src(b.Body.Attributes["resources"].Expr)
		switch {
		case slices.Contains(actions[sid], "s3:ListBucket"):
			cond := nested(t, sid, b.Body, "condition")
			if res != "[aws_s3_bucket.cache[0].arn]" || value(t, sid, cond, "variable", ctx).AsString() != "s3:prefix" ||
				value(t, sid, cond, "values", ctx).AsValueSlice()[0].AsString() != "cacheyd/*" {
				t.Errorf("%s: ListBucket on %s, want the bucket with a condition on s3:prefix cacheyd/*", sid, res)
			}
		default:
			if res != `["${aws_s3_bucket.cache[0].arn}/${var.s3_prefix}*"]` {
				t.Errorf("%s: on %s, want the objects under s3_prefix only", sid, res)
			}
		}
	}
	var all []string
	for _, a := range actions {
		all = append(all, a...)
	}
	slices.Sort(all)
	want := []string{"s3:AbortMultipartUpload", "s3:GetObject", "s3:ListBucket", "s3:ListMultipartUploadParts", "s3:PutObject"}
	if !slices.Equal(all, want) {
		t.Errorf("the policy allows %v, want exactly %v", all, want)
	}

	// The role trusts the service account the chart and the manifests
	// make, in their namespace.
	files, err := renderChart(t, "")
	if err != nil {
		t.Fatal(err)
	}
	sa := find[*corev1.ServiceAccount](decodeAll(t, "chart defaults", manifests(files)))[0]
	base := find[*corev1.ServiceAccount](decodeAll(t, "kustomize base", kustomize(t, deployDir("kubernetes", "base"))))[0]
	subject := "system:serviceaccount:" + mod.vars["cacheyd_namespace"].AsString() + ":" + mod.vars["cacheyd_service_account"].AsString()
	for _, s := range []*corev1.ServiceAccount{sa, base} {
		if got := "system:serviceaccount:cacheyd:" + s.Name; got != subject {
			t.Errorf("the role trusts %s; the chart's and the manifests' service account is %s", subject, got)
		}
	}
	var subs []string
	for _, b := range mod.block(t, "data.aws_iam_policy_document.cacheyd_assume").Blocks {
		for _, st := range b.Body.Blocks { // dynamic "statement" { content { ... } }
			for _, c := range st.Body.Blocks {
				if c.Type != "condition" {
					continue
				}
				if v := src(c.Body.Attributes["variable"].Expr); strings.HasSuffix(v, `:sub"`) {
					subs = append(subs, value(t, "trust condition", c.Body, "values", ctx).AsValueSlice()[0].AsString())
				}
			}
		}
	}
	if len(subs) != 1 || subs[0] != subject {
		t.Errorf("the IRSA trust conditions name %v, want %s alone", subs, subject)
	}
}
