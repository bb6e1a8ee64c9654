// Package chart_test tests the Helm chart with the real helm binary (`make
// test` installs it into bin/ and sets $HELM) and a real API server.
package chart_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/trainyard-dev/trainyard/internal/testenv"
	"github.com/trainyard-dev/trainyard/test/util"
)

func TestChart(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Helm chart suite")
}

// Third-party CRDs the all-options render needs, read from these modules
// (fetched through the Go module proxy like everything else).
var thirdPartyCRDs = []struct{ module, dir string }{
	{"github.com/cert-manager/cert-manager@v1.21.2", "deploy/crds"},
	{"github.com/prometheus-operator/prometheus-operator@v0.85.0", "example/prometheus-operator-crd"},
}

const kubeVersion = "1.37.2"

var (
	helmBin  string
	chartDir string
	allOpts  string
)

var _ = BeforeSuite(func() {
	testenv.SkipIfShort()
	helmBin = os.Getenv("HELM")
	Expect(helmBin).NotTo(BeEmpty(), "HELM is not set: run with `make test` (it installs helm into bin/)")
	chartDir = filepath.Join(testenv.RepoRoot(), "charts", "trainyard")
	allOpts = filepath.Join(chartDir, "ci", "all-options-values.yaml")
})

// helm runs helm and returns its standard output, failing on an error.
func helm(args ...string) string {
	GinkgoHelper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(helmBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	Expect(cmd.Run()).To(Succeed(), "helm %s: %s", strings.Join(args, " "), errOut.String())
	return out.String()
}

// render runs helm template and parses the objects.
func render(release, namespace string, extra ...string) (string, []*unstructured.Unstructured) {
	GinkgoHelper()
	text := helm(append([]string{"template", release, chartDir, "-n", namespace, "--kube-version", kubeVersion}, extra...)...)
	return text, parse(text)
}

func parse(text string) []*unstructured.Unstructured {
	GinkgoHelper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	GinkgoHelper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	Fail(fmt.Sprintf("no %s %q rendered", kind, name))
	return nil
}

// webhookConfigurations are the names of the rendered webhook configurations.
func webhookConfigurations(objs []*unstructured.Unstructured) []string {
	var names []string
	for _, o := range objs {
		if strings.HasSuffix(o.GetKind(), "WebhookConfiguration") {
			names = append(names, o.GetName())
		}
	}
	return names
}

func kinds(objs []*unstructured.Unstructured) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.GetKind())
	}
	return ks
}

func container(dep *unstructured.Unstructured) map[string]any {
	GinkgoHelper()
	cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	Expect(cs).To(HaveLen(1))
	return cs[0].(map[string]any)
}

func args(dep *unstructured.Unstructured) []string {
	var out []string
	for _, a := range container(dep)["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

// generatedRules are the rules controller-gen wrote into a role file.
func generatedRules(path, kind string) []any {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), path))
	Expect(err).NotTo(HaveOccurred())
	for _, o := range parse(string(data)) {
		if o.GetKind() == kind {
			rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
			return rules
		}
	}
	Fail("no " + kind + " in " + path)
	return nil
}

var _ = Describe("helm lint", func() {
	It("passes with the default values and with every option on", func() {
		helm("lint", "--strict", chartDir)
		helm("lint", "--strict", chartDir, "-f", allOpts)
	})

	It("renders without a cluster or --kube-version, as users and GitOps tools run helm template", func() {
		Expect(parse(helm("template", "trainyard", chartDir))).NotTo(BeEmpty())
		// The chart's kubeVersion is enforced.
		out, err := exec.Command(helmBin, "template", "x", chartDir, "--kube-version", "1.28.0").CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(string(out)).To(ContainSubstring("chart requires kubeVersion"))
	})

	It("rejects values the schema does not allow, naming them", func() {
		for _, c := range []struct{ set, msg string }{
			{"replicaCont=3", "additional properties 'replicaCont' not allowed"},
			{"webhook.failurePolicy=Sometimes", "/webhook/failurePolicy"},
			{"bridge.heartbeat=soon", "/bridge/heartbeat"},
			{"agent.mode=push", "/agent/mode"},
		} {
			out, err := exec.Command(helmBin, "template", "x", chartDir, "--kube-version", kubeVersion, "--set", c.set).CombinedOutput()
			Expect(err).To(HaveOccurred(), c.set)
			Expect(string(out)).To(ContainSubstring(c.msg), c.set)
		}
	})

	It("names what an agent-only install is missing", func() {
		out, err := exec.Command(helmBin, "template", "x", chartDir, "--kube-version", kubeVersion,
			"--set", "manager.enabled=false", "--set", "agent.enabled=true").CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(string(out)).To(ContainSubstring("agent.hubURL is required in bridge mode"))

		out, err = exec.Command(helmBin, "template", "x", chartDir, "--kube-version", kubeVersion,
			"--set", "agent.enabled=true", "--set", "bridge.namespace=fleet").CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(string(out)).To(ContainSubstring("the registration Secret there cannot be mounted"))
		out, err = exec.Command(helmBin, "template", "x", chartDir, "--kube-version", kubeVersion,
			"--set", "agent.enabled=true", "--set", "agent.mode=direct").CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(string(out)).To(ContainSubstring("agent.hubKubeconfigSecret.name is required in direct mode"))
	})
})

var _ = Describe("values", func() {
	It("are all in values.schema.json and in the chart's README", func() {
		values := map[string]any{}
		data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(data, &values)).To(Succeed())
		var schema map[string]any
		data, err = os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(data, &schema)).To(Succeed())
		readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
		Expect(err).NotTo(HaveOccurred())

		var leaves int
		var walk func(v map[string]any, s map[string]any, prefix string)
		walk = func(v map[string]any, s map[string]any, prefix string) {
			props, _ := s["properties"].(map[string]any)
			Expect(s["additionalProperties"]).To(Equal(false), "the schema of %q must refuse unknown keys", prefix)
			for k, val := range v {
				key := prefix + k
				sub, ok := props[k].(map[string]any)
				Expect(ok).To(BeTrue(), "%s is not in values.schema.json", key)
				if m, isMap := val.(map[string]any); isMap && len(m) > 0 && sub["properties"] != nil {
					walk(m, sub, key+".")
					continue
				}
				Expect(sub["description"]).To(BeAssignableToTypeOf(""), "%s has no description in values.schema.json", key)
				leaves++
				Expect(string(readme)).To(ContainSubstring("| `"+key+"` |"), "%s is not in the chart's README", key)
			}
			for k := range props {
				_, ok := v[k]
				Expect(ok).To(BeTrue(), "values.schema.json has %s%s, which values.yaml does not", prefix, k)
			}
		}
		walk(values, schema, "")
		Expect(leaves).To(BeNumerically(">", 50))
	})
})

var _ = Describe("the rendered containers' arguments", func() {
	// No pod runs here, so a flag the binary does not know would only show
	// in a real cluster, as a crash loop. The binary parses the rendered
	// arguments and gets as far as dialling an API server that is not there.
	It("are flags the trainyard binary accepts, with valid values", func() {
		bin, err := util.Binary(util.Manager)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gexec.CleanupBuildArtifacts)
		kubeconfig := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
users: [{name: none, user: {token: none}}]
current-context: none
`), 0o600)).To(Succeed())
		token := filepath.Join(GinkgoT().TempDir(), "token")
		Expect(os.WriteFile(token, []byte("t"), 0o600)).To(Succeed())

		var checked int
		for _, values := range [][]string{nil, {"-f", allOpts}, {"--set", "agent.enabled=true", "--set", "agent.mode=direct",
			"--set", "agent.hubKubeconfigSecret.name=hub"}} {
			_, objs := render("trainyard", "trainyard-system", values...)
			for _, o := range objs {
				if o.GetKind() != "Deployment" {
					continue
				}
				var a []string
				for _, arg := range args(o) {
					// Mounted files are not here: point them at local ones.
					arg = strings.Replace(arg, "--token-file=/var/run/trainyard/token/token", "--token-file="+token, 1)
					arg = strings.Replace(arg, "--hub-kubeconfig=/var/run/trainyard/hub/kubeconfig", "--hub-kubeconfig="+kubeconfig, 1)
					arg = strings.Replace(arg, "--webhook-cert-dir=/var/run/trainyard/webhook-certs", "--webhook-cert-dir="+GinkgoT().TempDir(), 1)
					a = append(a, arg)
				}
				cmd := exec.Command(bin, append(a, "--kubeconfig="+kubeconfig, "--health-probe-bind-address=127.0.0.1:0")...)
				cmd.Env = append(os.Environ(), "POD_NAMESPACE=trainyard-system")
				// Ports of their own, so that nothing else listening here matters.
				switch a[0] {
				case "agent":
				case "bridge":
					cmd.Args = append(cmd.Args, "--metrics-bind-address=0", "--bridge-bind-address=127.0.0.1:0")
				default:
					cmd.Args = append(cmd.Args, "--metrics-bind-address=0", "--bridge-bind-address=127.0.0.1:0", "--webhook-port=0")
				}
				out, err := cmd.CombinedOutput()
				Expect(err).To(HaveOccurred(), "with no API server it cannot start: %s", out)
				Expect(string(out)).To(ContainSubstring("127.0.0.1:1"), "%s %v stopped before it dialled the API server: %s", o.GetName(), a, out)
				checked++
			}
		}
		Expect(checked).To(Equal(8)) // the manager and the bridge three times each, the agent in bridge and in direct mode
	})
})

var _ = Describe("the docs' helm commands", func() {
	It("set only values the chart has", func() {
		values := map[string]any{}
		data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(data, &values)).To(Succeed())
		has := func(key string) bool {
			var v any = values
			for _, part := range strings.Split(key, ".") {
				m, ok := v.(map[string]any)
				if !ok {
					return false
				}
				if v, ok = m[part]; !ok {
					return false
				}
			}
			return true
		}
		set := regexp.MustCompile(`--set ([A-Za-z0-9_.]+)=`)
		var seen int
		for _, doc := range []string{"README.md", "charts/trainyard/README.md", "docs/agent.md"} {
			text, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), doc))
			Expect(err).NotTo(HaveOccurred())
			for _, m := range set.FindAllStringSubmatch(string(text), -1) {
				Expect(has(m[1])).To(BeTrue(), "%s sets %s, which values.yaml does not have", doc, m[1])
				seen++
			}
		}
		Expect(seen).To(BeNumerically(">=", 10))
	})
})

var _ = Describe("helm template", func() {
	It("renders a highly available, least-privilege manager by default, without cert-manager or Prometheus Operator objects", func() {
		_, objs := render("trainyard", "trainyard-system")
		Expect(kinds(objs)).NotTo(ContainElements("Certificate", "Issuer", "ServiceMonitor", "PrometheusRule"))
		Expect(kinds(objs)).NotTo(ContainElement("NetworkPolicy"))

		dep := find(objs, "Deployment", "trainyard")
		replicas, _, _ := unstructured.NestedFieldNoCopy(dep.Object, "spec", "replicas")
		Expect(replicas).To(BeNumerically("==", 2))
		a := args(dep)
		Expect(a).To(ContainElements("--leader-elect=true", "--webhook-cert-mode=self-signed",
			"--webhook-dns-names=trainyard-webhook.trainyard-system.svc,trainyard-webhook.trainyard-system.svc.cluster.local,"+
				"trainyard-metrics.trainyard-system.svc,trainyard-metrics.trainyard-system.svc.cluster.local",
			"--metrics-cert-dir=/var/run/trainyard/webhook-certs", "--bridge-bind-address=0"))
		// The bridge in a Deployment of its own, with its own account and
		// limits: a flood of its clients cannot take the webhook's memory.
		br := find(objs, "Deployment", "trainyard-bridge")
		Expect(br).NotTo(BeNil())
		Expect(args(br)).To(ContainElements("bridge", "--bridge-bind-address=:8080",
			"--bridge-registration-secret=trainyard-registration", "--bridge-namespace=trainyard-system", "--bridge-max-body-bytes=67108864"))
		Expect(args(br)).NotTo(ContainElement(HavePrefix("--leader-elect")))
		brReplicas, _, _ := unstructured.NestedFieldNoCopy(br.Object, "spec", "replicas")
		Expect(brReplicas).To(BeNumerically("==", 2))
		sa, _, _ := unstructured.NestedString(br.Object, "spec", "template", "spec", "serviceAccountName")
		Expect(sa).To(Equal("trainyard-bridge"))
		Expect(container(br)["resources"]).To(HaveKeyWithValue("limits", HaveKeyWithValue("memory", "256Mi")))
		Expect(container(br)["env"]).To(ContainElement(HaveKeyWithValue("name", "TRAINYARD_MEMORY_LIMIT")))
		Expect(find(objs, "PodDisruptionBudget", "trainyard-bridge")).NotTo(BeNil())
		// Every trainyard process gets its soft memory limit from its container's.
		for _, o := range objs {
			if o.GetKind() == "Deployment" {
				Expect(container(o)["env"]).To(ContainElement(HaveKeyWithValue("name", "TRAINYARD_MEMORY_LIMIT")), o.GetName())
			}
		}
		// The manager's pods serve no bridge port; the bridge Service selects
		// the release's pods by the port's name, not by component (an upgrade
		// from a chart whose manager served it keeps endpoints throughout).
		for _, p := range container(dep)["ports"].([]any) {
			Expect(p).NotTo(HaveKeyWithValue("name", "bridge"))
		}
		selector, _, _ := unstructured.NestedStringMap(find(objs, "Service", "trainyard-bridge").Object, "spec", "selector")
		Expect(selector).To(Equal(map[string]string{"app.kubernetes.io/name": "trainyard", "app.kubernetes.io/instance": "trainyard"}))
		c := container(dep)
		Expect(c["livenessProbe"]).To(HaveKeyWithValue("httpGet", HaveKeyWithValue("path", "/healthz")))
		Expect(c["readinessProbe"]).To(HaveKeyWithValue("httpGet", HaveKeyWithValue("path", "/readyz")))
		Expect(c["securityContext"]).To(And(HaveKeyWithValue("readOnlyRootFilesystem", true),
			HaveKeyWithValue("allowPrivilegeEscalation", false)))
		Expect(c["resources"]).To(HaveKey("requests"))
		// The memory limit reaches the manager, which keeps its heap under it.
		Expect(c["env"]).To(ContainElement(And(HaveKeyWithValue("name", "TRAINYARD_MEMORY_LIMIT"),
			HaveKeyWithValue("valueFrom", HaveKeyWithValue("resourceFieldRef", HaveKeyWithValue("resource", "limits.memory"))))))
		nonRoot, _, _ := unstructured.NestedBool(dep.Object, "spec", "template", "spec", "securityContext", "runAsNonRoot")
		Expect(nonRoot).To(BeTrue())
		anti, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "affinity", "podAntiAffinity",
			"preferredDuringSchedulingIgnoredDuringExecution")
		Expect(anti).To(HaveLen(1))
		// The certificate directory is the one writable place.
		vols, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
		Expect(vols).To(ConsistOf(HaveKeyWithValue("emptyDir", Not(BeNil()))))

		find(objs, "PodDisruptionBudget", "trainyard")
		for _, svc := range []string{"trainyard-webhook", "trainyard-bridge", "trainyard-metrics"} {
			find(objs, "Service", svc)
		}
		// The manager injects its CA into the configurations it is told about.
		for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
			name := "trainyard-" + map[string]string{"MutatingWebhookConfiguration": "mutating", "ValidatingWebhookConfiguration": "validating"}[kind] +
				"-webhook-configuration"
			cfg := find(objs, kind, name)
			Expect(a).To(ContainElement(HaveSuffix("-webhook-configuration=" + name)))
			hooks, _, _ := unstructured.NestedSlice(cfg.Object, "webhooks")
			Expect(hooks).NotTo(BeEmpty())
			for _, h := range hooks {
				svc, _, _ := unstructured.NestedMap(h.(map[string]any), "clientConfig", "service")
				Expect(svc).To(And(HaveKeyWithValue("name", "trainyard-webhook"), HaveKeyWithValue("namespace", "trainyard-system")))
			}
		}
		secret := find(objs, "Secret", "trainyard-registration")
		Expect(secret.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
		token, _, _ := unstructured.NestedString(secret.Object, "data", "token")
		Expect(token).NotTo(BeEmpty())

		// RBAC is exactly what the markers generated.
		role, _, _ := unstructured.NestedSlice(find(objs, "ClusterRole", "trainyard-manager").Object, "rules")
		Expect(role).To(Equal(generatedRules("config/rbac/role.yaml", "ClusterRole")))
		secrets, _, _ := unstructured.NestedSlice(find(objs, "Role", "trainyard-manager").Object, "rules")
		Expect(secrets).To(Equal(generatedRules("config/rbac/role.yaml", "Role")))
		for _, crd := range []string{"componentreleases", "releasetrains", "clusterreports"} {
			Expect(find(objs, "CustomResourceDefinition", crd+".trainyard.dev").GetAnnotations()).
				To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
		}
	})

	It("lets the manager patch its own release's webhook configurations and no others", func() {
		_, objs := render("edge", "edge-system")
		names := webhookConfigurations(objs)
		Expect(names).To(ConsistOf("edge-trainyard-mutating-webhook-configuration", "edge-trainyard-validating-webhook-configuration"))
		a := args(find(objs, "Deployment", "edge-trainyard"))
		Expect(a).To(ContainElements("--mutating-webhook-configuration="+names[0], "--validating-webhook-configuration="+names[1]))
		rules, _, _ := unstructured.NestedSlice(find(objs, "ClusterRole", "edge-trainyard-manager").Object, "rules")
		webhookRules := 0
		for _, r := range rules {
			rule := r.(map[string]any)
			if groups, _ := rule["apiGroups"].([]any); len(groups) == 1 && groups[0] == "admissionregistration.k8s.io" {
				webhookRules++
				Expect(rule["resourceNames"]).To(ConsistOf(names[0], names[1]))
			}
		}
		Expect(webhookRules).To(Equal(1))
	})

	It("has the API server drop reports' managedFields with the admission policy where it serves one (Kubernetes >= 1.36), and the webhook elsewhere", func() {
		_, objs := render("edge", "edge-system")
		policy := find(objs, "MutatingAdmissionPolicy", "edge-trainyard-clusterreport-managed-fields")
		binding := find(objs, "MutatingAdmissionPolicyBinding", "edge-trainyard-clusterreport-managed-fields")
		Expect(binding.Object["spec"]).To(Equal(map[string]any{"policyName": policy.GetName()}))
		source, err := testenv.ReadObjects(filepath.Join(testenv.RepoRoot(), "config", "webhook", "policy.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(source[0].GetKind()).To(Equal("MutatingAdmissionPolicy"))
		Expect(policy.Object["spec"]).To(Equal(source[0].Object["spec"]), "the policy of config/webhook/policy.yaml")
		// The webhook stays: it does the work where the policy is not run.
		Expect(webhookConfigurations(objs)).To(ContainElement("edge-trainyard-mutating-webhook-configuration"))

		count := func(args ...string) int {
			GinkgoHelper()
			out, err := exec.Command(helmBin, append([]string{"template", "x", chartDir}, args...)...).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "%s", out)
			n := 0
			for _, o := range parse(string(out)) {
				if strings.HasPrefix(o.GetKind(), "MutatingAdmissionPolicy") {
					n++
				}
			}
			return n
		}
		Expect(count("--kube-version", "1.36.0")).To(Equal(2))
		Expect(count("--kube-version", "1.35.4")).To(BeZero(), "before the API is served")
		Expect(count("--kube-version", kubeVersion, "--set", "admissionPolicies.enabled=false")).To(BeZero())
		// Against a cluster Helm lists its kinds, and the list decides.
		Expect(count("--kube-version", kubeVersion, "--api-versions", "v1/Namespace")).To(BeZero(), "a cluster with the API turned off")
		Expect(count("--kube-version", "1.35.4", "--api-versions", "v1/Namespace",
			"--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy")).To(Equal(2))
	})

	It("renders every option", func() {
		_, objs := render("full", "full-system", "-f", allOpts)
		Expect(kinds(objs)).To(ContainElements("Certificate", "Issuer", "ServiceMonitor", "PrometheusRule",
			"NetworkPolicy", "Ingress", "PodDisruptionBudget"))
		dep := find(objs, "Deployment", "full")
		a := args(dep)
		Expect(a).To(ContainElements("--webhook-cert-mode=external", "--pprof-bind-address=127.0.0.1:6060"))
		Expect(args(find(objs, "Deployment", "full-bridge"))).To(ContainElement("--bridge-namespace=fleet"))
		Expect(a).NotTo(ContainElement(HavePrefix("--webhook-dns-names")))
		Expect(container(dep)["image"]).To(HavePrefix("registry.example.com/platform/trainyard@sha256:"))
		vols, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
		Expect(vols).To(ConsistOf(HaveKeyWithValue("secret", HaveKeyWithValue("secretName", "full-webhook-cert"))))
		Expect(find(objs, "MutatingWebhookConfiguration", "full-mutating-webhook-configuration").GetAnnotations()).
			To(HaveKeyWithValue("cert-manager.io/inject-ca-from", "full-system/full-webhook"))
		// Secrets RBAC in the bridge's namespace, its tenants' and notifications.namespaces too.
		var roleNamespaces []string
		for _, o := range objs {
			if o.GetKind() == "Role" && o.GetName() == "full-manager" {
				roleNamespaces = append(roleNamespaces, o.GetNamespace())
			}
		}
		Expect(roleNamespaces).To(ConsistOf("full-system", "fleet", "fleet-b")) // the release's, the bridge's, a tenant's
		// notifications.namespaces: get on Secrets, nothing else.
		var notifyRoles []string
		for _, o := range objs {
			if o.GetKind() == "Role" && o.GetName() == "full-notifications" {
				notifyRoles = append(notifyRoles, o.GetNamespace())
				rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
				Expect(rules).To(ConsistOf(And(HaveKeyWithValue("resources", ConsistOf("secrets")),
					HaveKeyWithValue("verbs", ConsistOf("get")))))
			}
			if o.GetKind() == "RoleBinding" && o.GetName() == "full-notifications" {
				Expect(o.GetNamespace()).To(Equal("platform"))
			}
		}
		Expect(notifyRoles).To(ConsistOf("platform"))
		// The bridge's own Role only where it serves: its namespace and its tenants'.
		var bridgeRoles []string
		for _, o := range objs {
			if o.GetKind() == "Role" && o.GetName() == "full-bridge" {
				bridgeRoles = append(bridgeRoles, o.GetNamespace())
			}
		}
		Expect(bridgeRoles).To(ConsistOf("fleet", "fleet-b"))
		Expect(args(dep)).To(ContainElements("--notifications=true", "--notification-allowed-cidrs=169.254.10.0/24"))

		// The gauges' namespace label (the counted objects' namespace) is
		// kept, not replaced by the target's: the alerts group by it.
		endpoints, _, _ := unstructured.NestedSlice(find(objs, "ServiceMonitor", "full").Object, "spec", "endpoints")
		Expect(endpoints).To(ConsistOf(HaveKeyWithValue("honorLabels", true)))
		rule := find(objs, "PrometheusRule", "full")
		groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
		text := fmt.Sprint(groups)
		Expect(text).To(ContainSubstring("trainyard_clusters_stale"))
		Expect(text).To(ContainSubstring("trainyard_clusters_running_retracted"))

		agent := find(objs, "Deployment", "full-agent")
		Expect(args(agent)).To(ContainElements("agent", "--hub-url=https://trainyard.example.com", "--helm-releases",
			"--namespaces=apps,platform", "--cluster-id=edge-eu-1"))
		helmRole, _, _ := unstructured.NestedSlice(find(objs, "ClusterRole", "full-agent-helm").Object, "rules")
		Expect(helmRole).To(Equal(generatedRules("config/agent/sources/helm/role.yaml", "ClusterRole")))
		// The agent's generated rules, split into cluster-scoped reads (bound
		// cluster-wide) and the workloads (bound in agent.namespaces only).
		clusterRules, _, _ := unstructured.NestedSlice(find(objs, "ClusterRole", "full-agent").Object, "rules")
		workloadRules, _, _ := unstructured.NestedSlice(find(objs, "ClusterRole", "full-agent-workloads").Object, "rules")
		Expect(append(flatten(clusterRules), flatten(workloadRules)...)).To(ConsistOf(append(flatten(generatedRules("config/agent/role.yaml", "ClusterRole")),
			flatten(generatedRules("config/agent/sources/workloads/role.yaml", "ClusterRole"))...)))
		Expect(flatten(clusterRules)).To(ConsistOf("/namespaces:get", "/namespaces:list", "/namespaces:watch", "/nodes:get", "/nodes:list",
			"/nodes:watch", "about.k8s.io/clusterproperties:get", "about.k8s.io/clusterproperties:list", "about.k8s.io/clusterproperties:watch"))
		var bound []string
		for _, o := range objs {
			if strings.HasPrefix(o.GetName(), "full-agent") && strings.HasSuffix(o.GetKind(), "Binding") {
				bound = append(bound, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
			}
		}
		Expect(bound).To(ConsistOf("ClusterRoleBinding /full-agent",
			"RoleBinding apps/full-agent-workloads", "RoleBinding platform/full-agent-workloads",
			"RoleBinding apps/full-agent-helm", "RoleBinding platform/full-agent-helm",
			// Its credential Secret, by name only.
			"RoleBinding full-system/full-agent-credential"))
		credRules, _, _ := unstructured.NestedSlice(find(objs, "Role", "full-agent-credential").Object, "rules")
		Expect(credRules).To(ConsistOf(And(HaveKeyWithValue("resourceNames", ConsistOf("full-agent-credential")),
			HaveKeyWithValue("verbs", ConsistOf("get", "patch")))))
		Expect(args(agent)).To(ContainElements("--credential-secret=full-agent-credential", "--credential-namespace=full-system"))
		find(objs, "Secret", "full-agent-token")
	})

	It("installs only the agent in a workload cluster", func() {
		_, objs := render("agent", "trainyard-system", "--set", "manager.enabled=false", "--set", "crds.enabled=false",
			"--set", "agent.enabled=true", "--set", "agent.hubURL=https://hub.example.com", "--set", "agent.tokenSecret.name=hub-token")
		Expect(kinds(objs)).To(ConsistOf("ServiceAccount", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "Deployment",
			"Secret", "Role", "RoleBinding")) // the agent's credential Secret, and access to it
		dep := find(objs, "Deployment", "agent-trainyard-agent")
		Expect(args(dep)).To(ContainElements("--mode=bridge", "--hub-url=https://hub.example.com", "--token-file=/var/run/trainyard/token/token"))
		Expect(container(dep)["env"]).To(ContainElement(HaveKeyWithValue("name", "TRAINYARD_MEMORY_LIMIT")))
		vols, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
		Expect(vols).To(ConsistOf(HaveKeyWithValue("secret", HaveKeyWithValue("secretName", "hub-token"))))
	})
})

var _ = Describe("the ecosystem's conventions", func() {
	It("installs as a subchart: the schema takes the global values Helm passes", func() {
		_, objs := render("trainyard", "trainyard-system", "--set", "global.imageRegistry=registry.example.com", "--set", "global.team=platform")
		Expect(find(objs, "Deployment", "trainyard")).NotTo(BeNil())
	})

	It("puts commonLabels on every object and pod", func() {
		_, objs := render("full", "full-system", "-f", allOpts, "--set", "commonLabels.example\\.com/cost-center=fleet-42")
		Expect(len(objs)).To(BeNumerically(">", 20))
		for _, o := range objs {
			Expect(o.GetLabels()).To(HaveKeyWithValue("example.com/cost-center", "fleet-42"), "%s %s", o.GetKind(), o.GetName())
			if o.GetKind() == "Deployment" {
				labels, _, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
				Expect(labels).To(HaveKeyWithValue("example.com/cost-center", "fleet-42"), "pods of %s", o.GetName())
			}
		}
	})

	It("scrapes with a token Secret and verifies the endpoint's certificate by default", func() {
		for _, mode := range [][]string{{}, {"--set", "webhook.certManager.enabled=true"}} {
			_, objs := render("trainyard", "trainyard-system", append([]string{"--set", "metrics.serviceMonitor.enabled=true"}, mode...)...)
			endpoints, _, _ := unstructured.NestedSlice(find(objs, "ServiceMonitor", "trainyard").Object, "spec", "endpoints")
			Expect(endpoints).To(HaveLen(1))
			ep := endpoints[0].(map[string]any)
			Expect(ep).NotTo(HaveKey("bearerTokenFile"))
			Expect(ep["authorization"]).To(Equal(map[string]any{"type": "Bearer",
				"credentials": map[string]any{"name": "trainyard-metrics-scraper", "key": "token"}}))
			secret := "trainyard-webhook-ca" // the CA bundle alone, not the Secret with the keys
			if len(mode) > 0 {
				secret = "trainyard-webhook-cert" // cert-manager's
			}
			Expect(ep["tlsConfig"]).To(Equal(map[string]any{
				"ca":         map[string]any{"secret": map[string]any{"name": secret, "key": "ca.crt"}},
				"serverName": "trainyard-metrics.trainyard-system.svc"}))
			// The token is a ServiceAccount's that may only get /metrics.
			tok := find(objs, "Secret", "trainyard-metrics-scraper")
			Expect(tok.Object["type"]).To(Equal("kubernetes.io/service-account-token"))
			Expect(tok.GetAnnotations()).To(HaveKeyWithValue("kubernetes.io/service-account.name", "trainyard-metrics-scraper"))
			crb := find(objs, "ClusterRoleBinding", "trainyard-metrics-scraper")
			Expect(crb.Object["roleRef"]).To(HaveKeyWithValue("name", "trainyard-metrics-reader"))
			// The certificate covers the name Prometheus verifies.
			if len(mode) > 0 {
				names, _, _ := unstructured.NestedStringSlice(find(objs, "Certificate", "trainyard-webhook").Object, "spec", "dnsNames")
				Expect(names).To(ContainElement("trainyard-metrics.trainyard-system.svc"))
			} else {
				Expect(args(find(objs, "Deployment", "trainyard"))).To(ContainElement(ContainSubstring("trainyard-metrics.trainyard-system.svc,")))
			}
			Expect(args(find(objs, "Deployment", "trainyard"))).To(ContainElement("--metrics-cert-dir=/var/run/trainyard/webhook-certs"))
		}
		out, err := exec.Command(helmBin, "template", "t", chartDir, "--kube-version", kubeVersion,
			"--set", "metrics.serviceMonitor.enabled=true", "--set", "webhook.enabled=false").CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(string(out)).To(ContainSubstring("enable webhook, or set metrics.serviceMonitor.tlsConfig"))
	})

	It("links every alert to its section of docs/runbook.md", func() {
		_, objs := render("trainyard", "trainyard-system", "--set", "metrics.prometheusRule.enabled=true")
		groups, _, _ := unstructured.NestedSlice(find(objs, "PrometheusRule", "trainyard").Object, "spec", "groups")
		runbook, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "runbook.md"))
		Expect(err).NotTo(HaveOccurred())
		anchors := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^## (\S+)$`).FindAllStringSubmatch(string(runbook), -1) {
			anchors[strings.ToLower(m[1])] = true // GitHub's anchor of a one-word heading
		}
		alerts := 0
		for _, g := range groups {
			for _, r := range g.(map[string]any)["rules"].([]any) {
				rule := r.(map[string]any)
				alerts++
				url, _ := rule["annotations"].(map[string]any)["runbook_url"].(string)
				base, anchor, ok := strings.Cut(url, "#")
				Expect(ok).To(BeTrue(), "%s has no runbook_url with a section: %q", rule["alert"], url)
				Expect(base).To(Equal("https://github.com/trainyard-dev/trainyard/blob/main/docs/runbook.md"))
				Expect(anchors).To(HaveKey(anchor), "docs/runbook.md has no section %q for %s", anchor, rule["alert"])
				Expect(anchor).To(Equal(strings.ToLower(rule["alert"].(string))))
			}
		}
		Expect(alerts).To(Equal(6))
	})

	It("ships a Grafana dashboard whose every query parses and names only metrics trainyard exports", func() {
		_, objs := render("trainyard", "trainyard-system", "--set", "metrics.grafanaDashboard.enabled=true",
			"--set", "metrics.grafanaDashboard.namespace=monitoring")
		cm := find(objs, "ConfigMap", "trainyard-dashboard")
		Expect(cm.GetNamespace()).To(Equal("monitoring"))
		Expect(cm.GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"))
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		var dash struct {
			Title  string
			Panels []struct {
				Title, Type string
				Targets     []struct{ Expr string }
			}
		}
		Expect(json.Unmarshal([]byte(data["trainyard.json"]), &dash)).To(Succeed())
		Expect(dash.Title).To(Equal("trainyard"))

		// Every metric name the code registers.
		exported := map[string]bool{"trainyard_build_info": true}
		var sources []string
		for _, pkg := range []string{"controllers", "bridge", "notify"} {
			files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), pkg, "*.go"))
			Expect(err).NotTo(HaveOccurred())
			sources = append(sources, files...)
		}
		for _, f := range sources {
			src, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			for _, m := range regexp.MustCompile(`Name: +"(trainyard_[a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
				exported[m[1]] = true
			}
		}
		Expect(len(exported)).To(BeNumerically(">=", 10))
		// Each query as a recording rule, for promtool to parse; the
		// dashboard's variables replaced as Grafana would.
		var rules []map[string]string
		rows := map[string]bool{}
		for _, p := range dash.Panels {
			if p.Type == "row" {
				rows[p.Title] = true
				continue
			}
			Expect(p.Targets).NotTo(BeEmpty(), "panel %q", p.Title)
			for _, t := range p.Targets {
				for _, name := range regexp.MustCompile(`trainyard_[a-z_]+`).FindAllString(t.Expr, -1) {
					Expect(exported).To(HaveKey(strings.TrimSuffix(name, "_bucket")), "panel %q queries %s", p.Title, name)
				}
				expr := strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*").Replace(t.Expr)
				rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:panel_%d", len(rules)), "expr": expr})
			}
		}
		Expect(rows).To(Equal(map[string]bool{"Fleet": true, "Trains": true, "Rollouts": true, "Bridge": true, "Notifications": true}))
		promtool := os.Getenv("PROMTOOL")
		Expect(promtool).NotTo(BeEmpty(), "PROMTOOL is not set: run with `make test`")
		file, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(GinkgoT().TempDir(), "dashboard-rules.yaml")
		Expect(os.WriteFile(path, file, 0o600)).To(Succeed())
		out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "promtool check rules:\n%s", out)
		Expect(string(out)).To(ContainSubstring(fmt.Sprintf("SUCCESS: %d rules found", len(rules))))
	})
})

var _ = Describe("the PrometheusRule's alerts", func() {
	// promtool evaluates the rendered rules against series as the replicas
	// export them: only the leader sets the gauges, and for a while after a
	// leader change Prometheus still has the old leader's last samples.
	It("fire per namespace of ClusterReports, once their for: has passed, across a leader change (promtool test rules)", func() {
		promtool := os.Getenv("PROMTOOL")
		Expect(promtool).NotTo(BeEmpty(), "PROMTOOL is not set: run with `make test` (it installs promtool into bin/)")
		_, objs := render("trainyard", "trainyard-system", "--set", "metrics.prometheusRule.enabled=true")
		groups, _, _ := unstructured.NestedSlice(find(objs, "PrometheusRule", "trainyard").Object, "spec", "groups")
		rules, err := yaml.Marshal(map[string]any{"groups": groups})
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600)).To(Succeed())
		// Defaults: stale alert at >= 1 for 15m, retracted alert at > 0 for 5m.
		tests := `rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # The leader trainyard-0 until 10m, then trainyard-1; both for two minutes.
      - series: 'trainyard_clusters_stale{namespace="fleet-a", pod="trainyard-0"}'
        values: '2x11 stale'
      - series: 'trainyard_clusters_stale{namespace="fleet-a", pod="trainyard-1"}'
        values: '_x9 2x30'
      - series: 'trainyard_clusters_stale{namespace="fleet-b", pod="trainyard-0"}'
        values: '0x11 stale'
      - series: 'trainyard_clusters_stale{namespace="fleet-b", pod="trainyard-1"}'
        values: '_x9 0x30'
      - series: 'trainyard_clusters_running_retracted{namespace="fleet-a", pod="trainyard-0"}'
        values: '0x11 stale'
      - series: 'trainyard_clusters_running_retracted{namespace="fleet-b", pod="trainyard-0"}'
        values: '0x3 1x8 stale'
      - series: 'trainyard_clusters_running_retracted{namespace="fleet-b", pod="trainyard-1"}'
        values: '_x9 1x30'
      # fleet-a: 3 clusters exposed to a critical advisory from 2m on, on the leader only.
      - series: 'trainyard_clusters_exposed{namespace="fleet-a", advisory="GHSA-1111-2222-3333", severity="Critical", pod="trainyard-0"}'
        values: '0x1 3x40'
      - series: 'trainyard_clusters_exposed{namespace="fleet-b", advisory="GHSA-4444-5555-6666", severity="Low", pod="trainyard-0"}'
        values: '0x40'
      # One delivery to fleet-a/slack dropped at 5m; fleet-a/audit's queue waits from 2m on.
      - series: 'trainyard_notification_deliveries_total{namespace="fleet-a", target="slack", outcome="dropped", pod="trainyard-0"}'
        values: '0x4 1x20'
      - series: 'trainyard_notification_deliveries_total{namespace="fleet-a", target="slack", outcome="delivered", pod="trainyard-0"}'
        values: '0+1x24'
      - series: 'trainyard_notification_queued{namespace="fleet-a", target="audit", pod="trainyard-0"}'
        values: '0x1 3x40'
      - series: 'trainyard_notification_queued{namespace="fleet-a", target="slack", pod="trainyard-0"}'
        values: '0x40'
      # Both bridge replicas export fleet-a's first token to expire: 8 days
      # after the test's start (691200 s), so within 7 days from 1d on.
      # fleet-b's expires in 30 days.
      - series: 'trainyard_bridge_registration_token_next_expiry_timestamp_seconds{namespace="fleet-a", token="trainyard-registration/t1", pod="bridge-0"}'
        values: '691200x2000'
      - series: 'trainyard_bridge_registration_token_next_expiry_timestamp_seconds{namespace="fleet-a", token="trainyard-registration/t1", pod="bridge-1"}'
        values: '691200x2000'
      - series: 'trainyard_bridge_registration_token_next_expiry_timestamp_seconds{namespace="fleet-b", token="trainyard-registration/t9", pod="bridge-0"}'
        values: '2592000x2000'
    alert_rule_test:
      - eval_time: 14m
        alertname: TrainyardClustersStale
        exp_alerts: []
      - eval_time: 16m
        alertname: TrainyardClustersStale
        exp_alerts:
          - exp_labels: {namespace: fleet-a, severity: warning}
            exp_annotations:
              summary: "Clusters in fleet-a that have stopped checking in: 2"
              runbook_url: "https://github.com/trainyard-dev/trainyard/blob/main/docs/runbook.md#trainyardclustersstale"
              description: "ClusterReports in fleet-a have not checked in within the stale threshold (25h). ` + "`kubectl trainyard fleet -n fleet-a`" + ` shows which (STALE True)."
      - eval_time: 8m
        alertname: TrainyardClustersRunningRetracted
        exp_alerts: []
      - eval_time: 11m
        alertname: TrainyardClustersRunningRetracted
        exp_alerts:
          - exp_labels: {namespace: fleet-b, severity: warning}
            exp_annotations:
              summary: "Clusters in fleet-b running a retracted release: 1"
              runbook_url: "https://github.com/trainyard-dev/trainyard/blob/main/docs/runbook.md#trainyardclustersrunningretracted"
              description: "Clusters in fleet-b run at least one release that has been retracted. ` + "`kubectl trainyard outdated -n fleet-b`" + ` shows which (STATE Retracted) and why."
      - eval_time: 6m
        alertname: TrainyardClustersExposed
        exp_alerts: []
      - eval_time: 8m
        alertname: TrainyardClustersExposed
        exp_alerts:
          - exp_labels: {namespace: fleet-a, advisory: GHSA-1111-2222-3333, rating: Critical, severity: warning}
            exp_annotations:
              summary: "Clusters in fleet-a exposed to GHSA-1111-2222-3333 (Critical): 3"
              runbook_url: "https://github.com/trainyard-dev/trainyard/blob/main/docs/runbook.md#trainyardclustersexposed"
              description: "Clusters in fleet-a run a version that advisory GHSA-1111-2222-3333 affects, with no risk acceptance in force for them. ` + "`kubectl trainyard exposed GHSA-1111-2222-3333 -n fleet-a`" + ` lists them and the fix each is recommended."
      - eval_time: 4m
        alertname: TrainyardNotificationsDropped
        exp_alerts: []
      - eval_time: 6m
        alertname: TrainyardNotificationsDropped
        exp_alerts:
          - exp_labels: {namespace: fleet-a, target: slack, severity: warning}
            exp_annotations:
              summary: "Notifications to fleet-a/slack were dropped"
              runbook_url: "https://github.com/trainyard-dev/trainyard/blob/main/docs/runbook.md#trainyardnotificationsdropped"
              description: "Deliveries to NotificationTarget slack were given up in the last 30 minutes (queue full, refused with a 4xx, or retried for longer than retryFor). ` + "`kubectl get notificationtarget -n fleet-a slack -o yaml`" + ` shows the last error."
      - eval_time: 31m
        alertname: TrainyardNotificationsQueued
        exp_alerts: []
      - eval_time: 33m
        alertname: TrainyardNotificationsQueued
        exp_alerts:
          - exp_labels: {namespace: fleet-a, target: audit, severity: warning}
            exp_annotations:
              summary: "Notifications wait for fleet-a/audit: 3"
              runbook_url: "https://github.com/trainyard-dev/trainyard/blob/main/docs/runbook.md#trainyardnotificationsqueued"
              description: "Deliveries to NotificationTarget audit have been waiting for 30m: its receiver fails or cannot be reached. ` + "`kubectl get notificationtarget -n fleet-a audit`" + ` shows READY and the last error."
      - eval_time: 1000m
        alertname: TrainyardRegistrationTokenExpiring
        exp_alerts: []
      - eval_time: 1450m
        alertname: TrainyardRegistrationTokenExpiring
        exp_alerts:
          - exp_labels: {namespace: fleet-a, token: trainyard-registration/t1, severity: warning}
            exp_annotations:
              summary: "Registration token trainyard-registration/t1 of fleet-a expires in 6d 23h 50m 0s"
              runbook_url: "https://github.com/trainyard-dev/trainyard/blob/main/docs/runbook.md#trainyardregistrationtokenexpiring"
              description: "The registration token trainyard-registration/t1 (Secret/key) of tenant fleet-a expires within 7 days. Then it registers no new cluster; in legacy mode the clusters bound to it keep checking in, but none can be added with it. Add a new token to the Secret and give it to new clusters, or move the expiry (expires.trainyard.dev/<key>)."
`
		Expect(os.WriteFile(filepath.Join(dir, "tests.yaml"), []byte(tests), 0o600)).To(Succeed())
		cmd := exec.Command(promtool, "test", "rules", "tests.yaml")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "promtool test rules:\n%s", out)
		Expect(string(out)).To(ContainSubstring("SUCCESS"))
	})
})

var _ = Describe("helm upgrade from the chart whose manager served the bridge (issue 26)", func() {
	It("keeps the bridge's Service, served by the old manager pods until the new bridge pods, which wait for nothing of the manager's", func() {
		fixture, err := os.ReadFile(filepath.Join("testdata", "upgrade-from-single-deployment.yaml"))
		Expect(err).NotTo(HaveOccurred())
		old := parse(string(fixture))
		_, objs := render("trainyard", "trainyard-system")
		oldSvc, svc := find(old, "Service", "trainyard-bridge"), find(objs, "Service", "trainyard-bridge")
		// The same name and port: agents and Ingresses keep their address.
		oldPorts, _, _ := unstructured.NestedSlice(oldSvc.Object, "spec", "ports")
		ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
		Expect(ports).To(HaveLen(1))
		Expect(ports[0]).To(HaveKeyWithValue("port", oldPorts[0].(map[string]any)["port"]))
		Expect(ports[0]).To(HaveKeyWithValue("targetPort", "bridge"))

		selector, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
		podLabels := func(dep *unstructured.Unstructured) map[string]string {
			l, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
			return l
		}
		selects := func(dep *unstructured.Unstructured) bool {
			l := podLabels(dep)
			for k, v := range selector {
				if l[k] != v {
					return false
				}
			}
			return true
		}
		// A pod is an endpoint when the selector takes it and it has a port
		// named as the targetPort.
		servesBridge := func(dep *unstructured.Unstructured) bool {
			containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
			for _, c := range containers {
				ports, _, _ := unstructured.NestedSlice(c.(map[string]any), "ports")
				for _, p := range ports {
					if p.(map[string]any)["name"] == "bridge" {
						return selects(dep)
					}
				}
			}
			return false
		}
		oldManager, manager, bridge := find(old, "Deployment", "trainyard"), find(objs, "Deployment", "trainyard"), find(objs, "Deployment", "trainyard-bridge")
		Expect(servesBridge(oldManager)).To(BeTrue(), "the old manager pods stay endpoints while they run")
		Expect(servesBridge(bridge)).To(BeTrue(), "the new bridge pods become endpoints once Ready")
		Expect(servesBridge(manager)).To(BeFalse(), "the new manager serves no bridge")
		for _, o := range objs {
			if o.GetKind() == "Deployment" && o.GetName() != "trainyard-bridge" {
				Expect(servesBridge(o)).To(BeFalse(), o.GetName())
			}
		}
		// The bridge pods start with the new manager pods and wait for
		// nothing the manager makes: every Secret they mount is the chart's
		// own or optional (the metrics certificate arrives later).
		rendered := map[string]bool{}
		for _, o := range objs {
			if o.GetKind() == "Secret" {
				rendered[o.GetName()] = true
			}
		}
		volumes, _, _ := unstructured.NestedSlice(bridge.Object, "spec", "template", "spec", "volumes")
		for _, v := range volumes {
			sec, ok := v.(map[string]any)["secret"].(map[string]any)
			if !ok {
				continue
			}
			Expect(rendered[sec["secretName"].(string)] || sec["optional"] == true).To(BeTrue(), "the bridge pods wait for Secret %v", sec["secretName"])
		}
		_, hasReadiness, _ := unstructured.NestedMap(container(bridge), "readinessProbe")
		Expect(hasReadiness).To(BeTrue(), "endpoints only once its cache has synced")
		// An old manager pod is replaced only after a new one has been Ready
		// this long; the bridge pods, created in the same apply, are Ready
		// once their cache syncs (about 2 s in make dev).
		minReady, found, _ := unstructured.NestedFieldNoCopy(manager.Object, "spec", "minReadySeconds")
		Expect(found).To(BeTrue())
		Expect(minReady).To(BeNumerically(">=", 10))
	})
})

var _ = Describe("the rendered chart against a real API server", Ordered, func() {
	var env *envtest.Environment
	var cfg *rest.Config
	var kubeconfig string

	BeforeAll(func() {
		crdDirs := []string{}
		for _, m := range thirdPartyCRDs {
			out, err := exec.Command("go", "mod", "download", "-json", m.module).Output()
			Expect(err).NotTo(HaveOccurred(), "go mod download %s", m.module)
			var info struct{ Dir string }
			Expect(json.Unmarshal(out, &info)).To(Succeed())
			crdDirs = append(crdDirs, filepath.Join(info.Dir, m.dir))
		}
		env = &envtest.Environment{CRDDirectoryPaths: crdDirs, ErrorIfCRDPathMissing: true}
		var err error
		cfg, err = testenv.Start(env)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(env.Stop)
		kubeconfig = filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(kubeconfig, env.KubeConfig, 0o600)).To(Succeed())
		// The release namespaces, the bridge's, a tenant's and the agent's (all options).
		for _, ns := range []string{"trainyard-system", "full-system", "fleet", "fleet-b", "apps", "platform"} {
			kubectl(nil, "create", "namespace", ns)
		}
	})

	// serviceAccountKubeconfig is a kubeconfig that acts as the ServiceAccount,
	// so that a process run with it has only what the chart's RBAC gives.
	serviceAccountKubeconfig := func(ns, name string) string {
		GinkgoHelper()
		token := strings.TrimSpace(kubectl(nil, "-n", ns, "create", "token", name))
		path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, certificate-authority-data: %s}}]
contexts: [{name: test, context: {cluster: test, user: %s}}]
users: [{name: %s, user: {token: %q}}]
current-context: test
`, cfg.Host, base64.StdEncoding.EncodeToString(cfg.CAData), name, name, token)), 0o600)).To(Succeed())
		return path
	}

	apply := func(name, text string, extra ...string) {
		GinkgoHelper()
		path := filepath.Join(GinkgoT().TempDir(), name+".yaml")
		Expect(os.WriteFile(path, []byte(text), 0o600)).To(Succeed())
		base := append([]string{"apply", "--server-side", "--field-manager=helm-test", "-f", path}, extra...)
		kubectl(nil, append(base, "--dry-run=server")...)
		kubectl(nil, base...)
	}

	// First: its cluster-scoped objects have the names of the default
	// release's, with other role references.
	It("accepts the kustomize install (config/default), whose manager may patch exactly its webhook configurations", func() {
		text := kubectl(nil, "kustomize", filepath.Join(testenv.RepoRoot(), "config", "default"))
		path := filepath.Join(GinkgoT().TempDir(), "kustomize.yaml")
		Expect(os.WriteFile(path, []byte(text), 0o600)).To(Succeed())
		kubectl(nil, "apply", "--server-side", "--dry-run=server", "--force-conflicts", "--field-manager=kustomize-test", "-f", path)
		objs := parse(text)
		names := webhookConfigurations(objs)
		Expect(names).To(HaveLen(2))
		rules, _, _ := unstructured.NestedSlice(find(objs, "ClusterRole", "trainyard-manager-role").Object, "rules")
		Expect(rules).To(ContainElement(HaveKeyWithValue("resourceNames", ConsistOf(names[0], names[1]))))
	})

	It("accepts the default install, with server-side dry run and then for real", func() {
		text, objs := render("trainyard", "trainyard-system")
		apply("default", text)
		for _, o := range objs {
			args := []string{"get", resourceOf(o), o.GetName(), "-o", "name"}
			if o.GetNamespace() != "" {
				args = append(args, "-n", o.GetNamespace())
			}
			Expect(kubectl(nil, args...)).NotTo(BeEmpty())
		}
		// The CRDs are served: `kubectl get` of each kind works.
		Eventually(func() error {
			_, err := kubectlErr("get", "componentreleases,releasetrains,clusterreports", "-A")
			return err
		}).Should(Succeed())
	})

	It("accepts every option on, next to the default install", func() {
		text, objs := render("full", "full-system", "-f", allOpts)
		// The CRDs are shared with the default install: take them over.
		apply("full", text, "--force-conflicts")
		for _, o := range objs {
			args := []string{"get", resourceOf(o), o.GetName(), "-o", "name"}
			if o.GetNamespace() != "" {
				args = append(args, "-n", o.GetNamespace())
			}
			Expect(kubectl(nil, args...)).NotTo(BeEmpty())
		}
	})

	It("gives the agent all the access it needs, and only through the chart's RBAC", func() {
		// A hub that records what the agent reports.
		// It registers the cluster at the first check-in: the answer carries
		// the cluster's credential, which the agent keeps in its Secret and
		// presents from then on.
		reports := make(chan string, 16)
		auth := make(chan string, 16)
		hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if r.URL.Path == "/v3/clusters" {
				reports <- string(body)
				auth <- r.Header.Get("Authorization")
				if r.Header.Get("Authorization") == "Bearer registration" {
					w.Header().Set("X-Trainyard-Credential", "tyc.chart-test-credential")
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"data":[]}`))
		}))
		DeferCleanup(hub.Close)
		kubectl(nil, "-n", "apps", "create", "deployment", "web", "--image=example/web:1.0.0")
		kubectl(nil, "-n", "apps", "label", "deployment", "web", "app.kubernetes.io/name=web", "app.kubernetes.io/version=1.0.0")
		kubectl(nil, "-n", "default", "create", "deployment", "elsewhere", "--image=example/other:1")
		kubectl(nil, "-n", "default", "label", "deployment", "elsewhere", "app.kubernetes.io/name=elsewhere", "app.kubernetes.io/version=1")

		// The agent runs as its ServiceAccount, with the rendered arguments.
		saKubeconfig := serviceAccountKubeconfig("full-system", "fleet-agent")
		tokenFile := filepath.Join(GinkgoT().TempDir(), "token")
		Expect(os.WriteFile(tokenFile, []byte("registration"), 0o600)).To(Succeed())
		_, objs := render("full", "full-system", "-f", allOpts)
		var a []string
		for _, arg := range args(find(objs, "Deployment", "full-agent")) {
			switch {
			case strings.HasPrefix(arg, "--hub-url="):
				arg = "--hub-url=" + hub.URL
			case strings.HasPrefix(arg, "--token-file="):
				arg = "--token-file=" + tokenFile
			}
			a = append(a, arg)
		}
		// The chart runs the agent alone (cmd/trainyard-agent) from the image.
		dep := find(objs, "Deployment", "full-agent")
		command, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
		Expect(command).To(ConsistOf(HaveKeyWithValue("command", ConsistOf("/trainyard-agent"))))
		bin, err := util.Binary(util.Agent)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gexec.CleanupBuildArtifacts)
		agent, err := gexec.Start(exec.Command(bin, append(a, "--kubeconfig="+saKubeconfig, "--health-probe-bind-address=127.0.0.1:0")...),
			GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { agent.Terminate().Wait(10 * time.Second) })

		var report string
		Eventually(reports, time.Minute).Should(Receive(&report))
		Expect(report).To(ContainSubstring(`"id":"edge-eu-1"`))
		Expect(report).To(ContainSubstring(`"name":"web"`))
		Expect(report).NotTo(ContainSubstring("elsewhere"), "only agent.namespaces are reported")
		Expect(<-auth).To(Equal("Bearer registration"))
		Eventually(func() string {
			out := kubectl(nil, "-n", "full-system", "get", "secret", "full-agent-credential", "-o", "jsonpath={.data.credential}")
			b, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
			return string(b)
		}, 30*time.Second).Should(Equal("tyc.chart-test-credential"))
		Expect(string(agent.Err.Contents())).NotTo(ContainSubstring("forbidden"))
	})

	// runManager runs the manager locally as a release's ServiceAccount, with
	// the arguments the chart renders for it (ports and files made local).
	runManager := func(release, ns, serviceAccount, certDir string, values ...string) *gexec.Session {
		GinkgoHelper()
		saKubeconfig := serviceAccountKubeconfig(ns, serviceAccount)
		_, objs := render(release, ns, values...)
		var a []string
		for _, arg := range args(find(objs, "Deployment", release)) {
			if strings.HasPrefix(arg, "--webhook-cert-dir=") {
				arg = "--webhook-cert-dir=" + certDir
			}
			a = append(a, arg)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		webhookPort := l.Addr().(*net.TCPAddr).Port
		Expect(l.Close()).To(Succeed())
		bin, err := util.Binary(util.Manager)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gexec.CleanupBuildArtifacts)
		cmd := exec.Command(bin, append(a, "--kubeconfig="+saKubeconfig, "--health-probe-bind-address=127.0.0.1:0",
			"--metrics-bind-address=0", "--bridge-bind-address=127.0.0.1:0", "--webhook-host=127.0.0.1",
			fmt.Sprintf("--webhook-port=%d", webhookPort), "--pprof-bind-address=")...)
		cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns)
		manager, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { manager.Terminate().Wait(30 * time.Second) })
		return manager
	}

	It("gives the manager all the access it needs, and only through the chart's RBAC", func() {
		manager := runManager("trainyard", "trainyard-system", "trainyard", GinkgoT().TempDir())
		// It leads, keeps its webhook certificate in its Secret and injects
		// the CA into the chart's webhook configurations, and its caches and
		// controllers start.
		Eventually(manager.Err, time.Minute).Should(gbytes.Say(`(?i)successfully acquired lease.*trainyard-system/trainyard-manager\.trainyard\.dev`))
		Eventually(func() string {
			out, _ := kubectlFn(nil, "get", "validatingwebhookconfiguration", "trainyard-validating-webhook-configuration",
				"-o", "jsonpath={.webhooks[0].clientConfig.caBundle}")
			return out
		}, 30*time.Second).ShouldNot(BeEmpty())
		kubectl(nil, "-n", "trainyard-system", "get", "secret", "trainyard-webhook-tls")
		// The Secret the ServiceMonitor reads holds the CA bundle and no key.
		Eventually(func() string {
			out, _ := kubectlFn(nil, "-n", "trainyard-system", "get", "secret", "trainyard-webhook-ca", "-o", "jsonpath={.data}")
			return out
		}, 30*time.Second).Should(MatchJSON(fmt.Sprintf(`{"ca.crt":%q}`, strings.TrimSpace(kubectl(nil, "-n", "trainyard-system",
			"get", "secret", "trainyard-webhook-tls", "-o", "jsonpath={.data.ca\\.crt}")))))
		// The controllers start in no fixed order, so each is looked for in
		// the whole log (gbytes.Say would consume past the one that came first).
		Eventually(func() string { return string(manager.Err.Contents()) }, 30*time.Second).Should(And(
			MatchRegexp(`Starting workers.*clusterreport`),
			MatchRegexp(`Starting workers.*notificationrule`),
			MatchRegexp(`Starting workers.*notificationtarget`)))
		Consistently(func() string { return string(manager.Err.Contents()) }, "3s").ShouldNot(ContainSubstring("forbidden"))
		// What notifications need beyond what the informers above show: the
		// status writes, and the targets' Secrets, read uncached.
		sa := "system:serviceaccount:trainyard-system:trainyard"
		for _, check := range [][]string{
			{"patch", "notificationrules.trainyard.dev", "--subresource=status", "-A"},
			{"patch", "notificationtargets.trainyard.dev", "--subresource=status", "-A"},
			{"get", "secrets", "-n", "trainyard-system"},
		} {
			Expect(strings.TrimSpace(kubectl(nil, append([]string{"auth", "can-i", "--as=" + sa}, check...)...))).To(Equal("yes"), "%v", check)
		}
		// Secrets elsewhere stay out of reach unless notifications.namespaces names them.
		out, _ := kubectlFn(nil, "auth", "can-i", "--as="+sa, "get", "secrets", "-n", "platform")
		Expect(strings.TrimSpace(out)).To(Equal("no"))
	})

	// runBridge runs `trainyard bridge` locally as the bridge's
	// ServiceAccount, with the arguments the chart renders for it.
	// extra flags come last, so they win over the rendered ones.
	runBridge := func(release, ns, serviceAccount string, extra []string, values ...string) *gexec.Session {
		GinkgoHelper()
		saKubeconfig := serviceAccountKubeconfig(ns, serviceAccount)
		_, objs := render(release, ns, values...)
		a := args(find(objs, "Deployment", release+"-bridge"))
		Expect(a).NotTo(BeEmpty())
		Expect(a[0]).To(Equal("bridge"))
		bin, err := util.Binary(util.Manager)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gexec.CleanupBuildArtifacts)
		a = append(a, "--kubeconfig="+saKubeconfig, "--health-probe-bind-address=127.0.0.1:0",
			"--metrics-bind-address=0", "--bridge-bind-address=127.0.0.1:0")
		cmd := exec.Command(bin, append(a, extra...)...)
		cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns)
		bridge, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { bridge.Terminate().Wait(30 * time.Second) })
		return bridge
	}

	It("lets Prometheus scrape the bridge as the ServiceMonitor says: the manager's CA, the bridge's own certificate, the scraper's token", func() {
		_, objs0 := render("trainyard", "trainyard-system", "--set", "metrics.serviceMonitor.enabled=true")
		objs := objs0
		ep, _, _ := unstructured.NestedSlice(find(objs, "ServiceMonitor", "trainyard-bridge").Object, "spec", "endpoints")
		Expect(ep).To(HaveLen(1))
		tlsConfig := ep[0].(map[string]any)["tlsConfig"].(map[string]any)
		caSecret, _, _ := unstructured.NestedString(tlsConfig, "ca", "secret", "name")
		serverName := tlsConfig["serverName"].(string)
		Expect(serverName).To(Equal("trainyard-bridge-metrics.trainyard-system.svc"))
		svc := find(objs, "Service", "trainyard-bridge-metrics")
		Expect(svc.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/component", "bridge-metrics"))

		// The manager, under the chart's RBAC, keeps the bridge's certificate
		// in a Secret of its own: its pair and the CA bundle, no CA key.
		manager := runManager("trainyard", "trainyard-system", "trainyard", GinkgoT().TempDir())
		secret := "trainyard-bridge-metrics-tls"
		Eventually(func() string {
			out, _ := kubectlFn(nil, "-n", "trainyard-system", "get", "secret", secret, "-o", "go-template={{range $k, $v := .data}}{{$k}} {{end}}")
			return out
		}, time.Minute).Should(Equal("ca.crt tls.crt tls.key "))
		Consistently(func() string { return string(manager.Err.Contents()) }, "2s").ShouldNot(ContainSubstring("forbidden"))
		certDir := GinkgoT().TempDir()
		for _, key := range []string{"tls.crt", "tls.key"} {
			b, err := base64.StdEncoding.DecodeString(kubectl(nil, "-n", "trainyard-system", "get", "secret", secret,
				"-o", "jsonpath={.data."+strings.ReplaceAll(key, ".", "\\.")+"}"))
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(filepath.Join(certDir, key), b, 0o600)).To(Succeed())
		}

		// The bridge serves it on its metrics port (the Deployment mounts the
		// Secret where --metrics-cert-dir points).
		_, objs = render("trainyard", "trainyard-system")
		Expect(args(find(objs, "Deployment", "trainyard-bridge"))).To(ContainElement("--metrics-cert-dir=/var/run/trainyard/metrics-certs"))
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		metricsAddr := l.Addr().String()
		Expect(l.Close()).To(Succeed())
		bridge := runBridge("trainyard", "trainyard-system", "trainyard-bridge",
			[]string{"--metrics-bind-address=" + metricsAddr, "--metrics-cert-dir=" + certDir})
		Eventually(bridge.Err, time.Minute).Should(gbytes.Say(`bridge listening`))

		// Prometheus' scrape: the CA from the ServiceMonitor's Secret, its
		// serverName, the scraper ServiceAccount's token.
		ca, err := base64.StdEncoding.DecodeString(kubectl(nil, "-n", "trainyard-system", "get", "secret", caSecret, "-o", "jsonpath={.data.ca\\.crt}"))
		Expect(err).NotTo(HaveOccurred())
		pool := x509.NewCertPool()
		Expect(pool.AppendCertsFromPEM(ca)).To(BeTrue())
		scrape := func(token string) (int, string) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName}}}
			req, _ := http.NewRequest(http.MethodGet, "https://"+metricsAddr+"/metrics", nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := c.Do(req)
			if err != nil {
				return 0, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		// The scraper's ServiceAccount and binding, as the chart renders them
		// with the ServiceMonitor (whose own CRD this API server lacks).
		var scraper []string
		for _, kind := range []string{"ServiceAccount", "ClusterRoleBinding"} {
			y, err := yaml.Marshal(find(objs0, kind, "trainyard-metrics-scraper").Object)
			Expect(err).NotTo(HaveOccurred())
			scraper = append(scraper, string(y))
		}
		apply("metrics-scraper", strings.Join(scraper, "---\n"))
		token := strings.TrimSpace(kubectl(nil, "-n", "trainyard-system", "create", "token", "trainyard-metrics-scraper"))
		Eventually(func() int { code, _ := scrape(token); return code }, 30*time.Second).Should(Equal(http.StatusOK))
		_, body := scrape(token)
		Expect(body).To(ContainSubstring("trainyard_bridge_requests_total"))
		// The registration token's expiry, read at the bridge's start.
		Expect(body).To(MatchRegexp(`trainyard_bridge_registration_token_next_expiry_timestamp_seconds\{namespace="trainyard-system",token="trainyard-registration/[^"]+"\} \S+`))
		code, _ := scrape("")
		Expect(code).To(Equal(http.StatusUnauthorized), "anyone else is refused")
		Consistently(func() string { return string(bridge.Err.Contents()) }, "2s").ShouldNot(ContainSubstring("forbidden"))
	})

	It("lets the bridge, in its own Deployment, keep its doctor dumps within their caps through its own RBAC alone", func() {
		// Open mode, so that a dump needs no report (creating one needs the
		// chart's webhook Service, out of reach here).
		bridge := runBridge("trainyard", "trainyard-system", "trainyard-bridge", nil,
			"--set", "bridge.checkInAuth=open", "--set", "bridge.doctor.maxReports=2", "--set", "bridge.doctor.burst=10")
		Eventually(bridge.Err, time.Minute).Should(gbytes.Say(`bridge listening`))
		addr := regexp.MustCompile(`bridge listening.*?(127\.0\.0\.1:\d+)`).FindStringSubmatch(string(bridge.Err.Contents()))
		Expect(addr).To(HaveLen(2), "the bridge logs its address")
		dump := `{"workflow":{"id":"rbac-check","components":[]},"nodes":[],"namespaces":[]}`
		for i := range 4 {
			Eventually(func() int {
				resp, err := http.Post(fmt.Sprintf("http://%s/v3/doctor/dump-%d", addr[1], i), "application/json", strings.NewReader(dump))
				if err != nil {
					return 0
				}
				resp.Body.Close()
				return resp.StatusCode
			}, 30*time.Second).Should(Equal(http.StatusOK))
		}
		// It listed the cluster's dumps and deleted the oldest ones.
		Expect(strings.Fields(kubectl(nil, "-n", "trainyard-system", "get", "secrets", "-l", "trainyard.dev/doctor-cluster=rbac-check",
			"-o", "name"))).To(ConsistOf("secret/trainyard-doctor-report-dump-2", "secret/trainyard-doctor-report-dump-3"))
		Consistently(func() string { return string(bridge.Err.Contents()) }, "2s").ShouldNot(ContainSubstring("forbidden"))
	})

	It("gives the manager with every option on (cert-manager's certificate, the bridge in its own namespace) all it needs", func() {
		// What cert-manager would mount: a serving certificate.
		certDir := GinkgoT().TempDir()
		writeServingCert(certDir)
		manager := runManager("full", "full-system", "trainyard-manager", certDir, "-f", allOpts)
		Eventually(manager.Err, time.Minute).Should(gbytes.Say(`(?i)successfully acquired lease.*full-system/trainyard-manager\.trainyard\.dev`))
		Eventually(manager.Err, 30*time.Second).Should(gbytes.Say(`Starting workers.*clusterreport`))
		out := kubectl(nil, "auth", "can-i", "--as=system:serviceaccount:full-system:trainyard-manager", "get", "secrets", "-n", "platform")
		Expect(strings.TrimSpace(out)).To(Equal("yes"), "notifications.namespaces lets the manager read targets' Secrets there")
		Consistently(func() string { return string(manager.Err.Contents()) }, "3s").ShouldNot(ContainSubstring("forbidden"))
		// The manager does not make its own certificate in this mode.
		_, err := kubectlErr("-n", "full-system", "get", "secret", "full-webhook-tls")
		Expect(err).To(HaveOccurred())
	})

	It("refuses a manifest the API does not accept (the check can fail)", func() {
		text, _ := render("trainyard", "trainyard-system")
		broken := strings.Replace(text, "failurePolicy: Fail", "failurePolicy: Sometimes", 1)
		path := filepath.Join(GinkgoT().TempDir(), "broken.yaml")
		Expect(os.WriteFile(path, []byte(broken), 0o600)).To(Succeed())
		out, err := kubectlErr("apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", path)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("Sometimes"))
	})

	kubectlFn = func(stdin []byte, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
})

var kubectlFn func(stdin []byte, args ...string) (string, error)

func kubectl(stdin []byte, args ...string) string {
	GinkgoHelper()
	out, err := kubectlFn(stdin, args...)
	Expect(err).NotTo(HaveOccurred(), "kubectl %s: %s", strings.Join(args, " "), out)
	return out
}

func kubectlErr(args ...string) (string, error) { return kubectlFn(nil, args...) }

// writeServingCert writes a self-signed tls.crt and tls.key for 127.0.0.1
// into dir, as cert-manager's Secret would provide them.
func writeServingCert(dir string) {
	GinkgoHelper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "webhook"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	keyDER, err := x509.MarshalECPrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)).To(Succeed())
}

// flatten lists what rules allow, one "group/resource:verb" each.
func flatten(rules []any) []string {
	var out []string
	for _, r := range rules {
		rule := r.(map[string]any)
		for _, g := range rule["apiGroups"].([]any) {
			for _, res := range rule["resources"].([]any) {
				for _, v := range rule["verbs"].([]any) {
					out = append(out, fmt.Sprintf("%s/%s:%s", g, res, v))
				}
			}
		}
	}
	return out
}

// resourceOf names an object's resource for kubectl get, with its API group
// so that it is unambiguous.
func resourceOf(o *unstructured.Unstructured) string {
	r := strings.ToLower(o.GetKind())
	if g := o.GroupVersionKind().Group; g != "" {
		r += "." + g
	}
	return r
}

var _ = Describe("helm install, upgrade and uninstall against a real API server", Ordered, func() {
	var kubeconfig string
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, append(args, "--kubeconfig", kubeconfig)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	kubectl := func(args ...string) string {
		GinkgoHelper()
		out, err := run(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), args...)
		Expect(err).NotTo(HaveOccurred(), out)
		return out
	}
	helmIn := func(args ...string) string {
		GinkgoHelper()
		out, err := run(helmBin, args...)
		Expect(err).NotTo(HaveOccurred(), out)
		return out
	}

	BeforeAll(func() {
		env := &envtest.Environment{}
		_, err := testenv.Start(env)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(env.Stop)
		kubeconfig = filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(kubeconfig, env.KubeConfig, 0o600)).To(Succeed())
	})

	It("installs as the README says, keeps the registration token on upgrade, and keeps CRDs and token on uninstall", func() {
		helmIn("install", "trainyard", chartDir, "-n", "trainyard-system", "--create-namespace")
		token := kubectl("-n", "trainyard-system", "get", "secret", "trainyard-registration", "-o", "jsonpath={.data.token}")
		Expect(token).NotTo(BeEmpty())
		Expect(kubectl("-n", "trainyard-system", "get", "deployment", "trainyard", "-o", "jsonpath={.spec.replicas}")).To(Equal("2"))
		Expect(kubectl("-n", "trainyard-system", "get", "deployment", "trainyard-bridge", "-o", "jsonpath={.spec.replicas}")).To(Equal("2"))
		// Helm asks the cluster which kinds it serves: this one serves the policy.
		Expect(kubectl("get", "mutatingadmissionpolicybinding", "trainyard-clusterreport-managed-fields", "-o", "jsonpath={.spec.policyName}")).
			To(Equal("trainyard-clusterreport-managed-fields"))

		helmIn("upgrade", "trainyard", chartDir, "-n", "trainyard-system", "--set", "replicaCount=3")
		Expect(kubectl("-n", "trainyard-system", "get", "secret", "trainyard-registration", "-o", "jsonpath={.data.token}")).
			To(Equal(token), "agents in the fleet hold the token: an upgrade must not change it")
		Expect(kubectl("-n", "trainyard-system", "get", "deployment", "trainyard", "-o", "jsonpath={.spec.replicas}")).To(Equal("3"))

		helmIn("uninstall", "trainyard", "-n", "trainyard-system")
		Expect(kubectl("get", "crd", "componentreleases.trainyard.dev", "-o", "name")).NotTo(BeEmpty())
		Expect(kubectl("-n", "trainyard-system", "get", "secret", "trainyard-registration", "-o", "jsonpath={.data.token}")).To(Equal(token))
		out, err := run(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "-n", "trainyard-system", "get", "deployment", "trainyard")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("NotFound"))

		// A reinstall finds the kept token and keeps using it.
		helmIn("install", "trainyard", chartDir, "-n", "trainyard-system")
		Expect(kubectl("-n", "trainyard-system", "get", "secret", "trainyard-registration", "-o", "jsonpath={.data.token}")).To(Equal(token))
	})
})

// CI shows only the tail of a run: the causes of its failures come last.
var _ = ReportAfterSuite("failure digest", testenv.FailureDigest(12))
