package deploytest

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

var tfDir = deployDir("terraform", "eks")

// terraformModule is the parsed example: its resources by "type.name" and
// an evaluation context with every variable at its default, path.module,
// and the two functions the example calls.
type terraformModule struct {
	resources map[string]*hclsyntax.Body
	data      map[string]*hclsyntax.Body // data sources by "type.name"
	ctx       *hcl.EvalContext
	vars      map[string]cty.Value            // the variables' defaults
	locals    map[string]*hclsyntax.Attribute // locals, which read variables only
	src       map[string][]byte               // each file's text by name
}

func parseTerraform(t *testing.T) *terraformModule {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(tfDir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s: %v", tfDir, err)
	}
	p := hclparse.NewParser()
	mod := &terraformModule{resources: map[string]*hclsyntax.Body{}, data: map[string]*hclsyntax.Body{},
		locals: map[string]*hclsyntax.Attribute{}, src: map[string][]byte{}}
	vars := map[string]cty.Value{}
	for _, f := range files {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", f, diags.Error())
		}
		mod.src[f] = file.Bytes
		for _, b := range file.Body.(*hclsyntax.Body).Blocks {
			switch b.Type {
			case "resource":
				mod.resources[b.Labels[0]+"."+b.Labels[1]] = b.Body
			case "data":
				mod.data[b.Labels[0]+"."+b.Labels[1]] = b.Body
			case "locals":
				for name, a := range b.Body.Attributes {
					mod.locals[name] = a
				}
			case "variable":
				v := cty.NullVal(cty.DynamicPseudoType)
				if a, ok := b.Body.Attributes["default"]; ok {
					var diags hcl.Diagnostics
					if v, diags = a.Expr.Value(nil); diags.HasErrors() {
						t.Fatalf("variable %s default: %s", b.Labels[0], diags.Error())
					}
				}
				vars[b.Labels[0]] = v
			}
		}
	}
	mod.vars = vars
	mod.ctx = mod.evalCtx(t, nil)
	return mod
}

// evalCtx is an evaluation context with the variables at their defaults
// but for those in set, and the locals computed from them.
func (m *terraformModule) evalCtx(t *testing.T, set map[string]cty.Value) *hcl.EvalContext {
	t.Helper()
	vars := map[string]cty.Value{}
	for k, v := range m.vars {
		vars[k] = v
	}
	for k, v := range set {
		vars[k] = v
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":  cty.ObjectVal(vars),
			"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(tfDir)}),
		},
		Functions: map[string]function.Function{
			"base64encode": base64encodeFunc,
			"templatefile": templatefileFunc,
		},
	}
	locals := map[string]cty.Value{}
	for name, a := range m.locals {
		v, diags := a.Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("local %s: %s", name, diags.Error())
		}
		locals[name] = v
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx
}

// userData evaluates a launch template's user_data and decodes it.
func (m *terraformModule) userData(t *testing.T, resource string) string {
	t.Helper()
	body, ok := m.resources[resource]
	if !ok {
		t.Fatalf("no resource %s", resource)
	}
	a, ok := body.Attributes["user_data"]
	if !ok {
		t.Fatalf("%s has no user_data", resource)
	}
	v, diags := a.Expr.Value(m.ctx)
	if diags.HasErrors() {
		t.Fatalf("%s user_data: %s", resource, diags.Error())
	}
	raw, err := base64.StdEncoding.DecodeString(v.AsString())
	if err != nil {
		t.Fatalf("%s user_data is not base64: %v", resource, err)
	}
	return string(raw)
}

// base64encode and templatefile behave as Terraform's functions of those
// names (templatefile without Terraform's own functions inside templates,
// which the example does not use).
var base64encodeFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "str", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(base64.StdEncoding.EncodeToString([]byte(args[0].AsString()))), nil
	},
})

var templatefileFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "path", Type: cty.String}, {Name: "vars", Type: cty.DynamicPseudoType}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		src, err := os.ReadFile(args[0].AsString())
		if err != nil {
			return cty.NilVal, err
		}
		expr, diags := hclsyntax.ParseTemplate(src, args[0].AsString(), hcl.InitialPos)
		if diags.HasErrors() {
			return cty.NilVal, diags
		}
		v, diags := expr.Value(&hcl.EvalContext{Variables: args[1].AsValueMap()})
		if diags.HasErrors() {
			return cty.NilVal, diags
		}
		return v, nil
	},
})

// TestTerraformAL2023 evaluates the AL2023 launch template's user data as
// Terraform would, and checks that it is a MIME multi-part document whose
// shell script writes a _default/hosts.toml that containerd will use: a
// [host] table for cacheyd with pull and resolve, a dial_timeout, and no
// server line (so the registry itself stays the fallback).
func TestTerraformAL2023(t *testing.T) {
	mod := parseTerraform(t)
	ng, ok := mod.resources["aws_eks_node_group.al2023"]
	if !ok {
		t.Fatal("no aws_eks_node_group.al2023")
	}
	if v, diags := ng.Attributes["ami_type"].Expr.Value(mod.ctx); diags.HasErrors() || !strings.HasPrefix(v.AsString(), "AL2023_") {
		t.Errorf("node group ami_type %v %v, want AL2023_*", v, diags)
	}
	ud := mod.userData(t, "aws_launch_template.al2023")

	msg, err := mail.ReadMessage(strings.NewReader(ud))
	if err != nil {
		t.Fatalf("user data is not a MIME document: %v\n%s", err, ud)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("user data Content-Type %q (%v), want multipart/mixed (what EKS merges with its own)", mt, err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var script string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("user data part: %v", err)
		}
		b, _ := io.ReadAll(p)
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct == "text/x-shellscript" {
			script = string(b)
		}
	}
	if script == "" {
		t.Fatal("user data has no text/x-shellscript part")
	}
	if out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("the script does not parse in bash: %v\n%s", err, out)
	}

	// The here-document is quoted, so the shell writes it as it is.
	re := regexp.MustCompile(`(?s)cat > /etc/containerd/certs\.d/_default/hosts\.toml <<'(\w+)'\n(.*?)\n(\w+)\n`)
	m := re.FindStringSubmatch(script)
	if m == nil || m[1] != m[3] {
		t.Fatalf("the script writes no /etc/containerd/certs.d/_default/hosts.toml from a quoted here-document:\n%s", script)
	}
	var hosts struct {
		Server string `toml:"server"`
		Host   map[string]struct {
			Capabilities []string `toml:"capabilities"`
			DialTimeout  string   `toml:"dial_timeout"`
		} `toml:"host"`
	}
	md, err := toml.Decode(m[2], &hosts)
	if err != nil {
		t.Fatalf("hosts.toml does not parse: %v\n%s", err, m[2])
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Errorf("hosts.toml has keys containerd does not know here: %v", und)
	}
	if hosts.Server != "" {
		t.Errorf("hosts.toml sets server = %q: pulls would never fall back to the registry", hosts.Server)
	}
	h, ok := hosts.Host["http://localhost:30123"]
	if len(hosts.Host) != 1 || !ok {
		t.Fatalf("hosts.toml [host] tables %v, want one for http://localhost:30123 (a file without one is ignored)", hosts.Host)
	}
	if strings.Join(h.Capabilities, ",") != "pull,resolve" {
		t.Errorf("capabilities %v, want [pull resolve]", h.Capabilities)
	}
	if d, err := time.ParseDuration(h.DialTimeout); err != nil || d <= 0 || d > 5*time.Second {
		t.Errorf("dial_timeout %q: want a short duration so an absent cacheyd costs little", h.DialTimeout)
	}
}

// TestTerraformBottlerocket: the Bottlerocket user data is TOML settings
// naming cacheyd as the mirror of every registry.
func TestTerraformBottlerocket(t *testing.T) {
	mod := parseTerraform(t)
	ud := mod.userData(t, "aws_launch_template.bottlerocket")
	var settings struct {
		Settings struct {
			ContainerRegistry struct {
				Mirrors []struct {
					Registry string   `toml:"registry"`
					Endpoint []string `toml:"endpoint"`
				} `toml:"mirrors"`
			} `toml:"container-registry"`
		} `toml:"settings"`
	}
	md, err := toml.Decode(ud, &settings)
	if err != nil {
		t.Fatalf("Bottlerocket settings do not parse: %v\n%s", err, ud)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Errorf("unexpected settings: %v", und)
	}
	ms := settings.Settings.ContainerRegistry.Mirrors
	if len(ms) != 1 || ms[0].Registry != "*" || len(ms[0].Endpoint) != 1 || ms[0].Endpoint[0] != "http://localhost:30123" {
		t.Errorf("mirrors %+v, want registry \"*\" with endpoint [http://localhost:30123]", ms)
	}
}

// TestTerraformFormatted: files as "terraform fmt" leaves them, checked by
// the HCL library's own formatter, which terraform fmt uses.
func TestTerraformFormatted(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(tfDir, "*.tf"))
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted (terraform fmt)", filepath.Base(f))
		}
	}
}
