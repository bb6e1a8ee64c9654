package bridge

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/checkin"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

// Doctor reports are diagnostic dumps, not fleet state: they are stored
// gzip-compressed in a Secret each (they may hold cluster details), never in
// a custom resource. A dump belongs to the cluster its "workflow" names; in
// token mode only that cluster's registration token may upload it. Dump
// Secrets have a prefix and labels of their own, and the bridge never
// touches a Secret without them. Each cluster keeps at most
// MaxDoctorReports (a newer one replaces the oldest), all clusters of a
// tenant together at most MaxDoctorTotal dumps and MaxDoctorBytes of them.
const (
	doctorKey = "report.json.gz"
	// maxDoctorStored keeps the Secret well under the API's 1 MiB object limit.
	maxDoctorStored = 768 << 10
	// doctorPrefix starts every dump Secret's name; no other Secret of
	// trainyard's (registration, doctor-auth, webhook certificates) does.
	doctorPrefix = "trainyard-doctor-report-"
	// LabelDoctorReport marks a dump Secret; LabelDoctorCluster names the
	// ClusterReport it belongs to.
	LabelDoctorReport  = "trainyard.dev/doctor-report"
	LabelDoctorCluster = "trainyard.dev/doctor-cluster"
	// AnnotationDoctorBytes is a dump's compressed size, which the tenant's
	// byte cap sums from the dumps' metadata (their data is never listed).
	AnnotationDoctorBytes = "trainyard.dev/doctor-bytes"
	// legacyDoctorPrefix and legacyDoctorLabel are how dumps were stored
	// before: they are still served, never written.
	legacyDoctorPrefix = "trainyard-doctor-"
	legacyDoctorLabel  = "trainyard.dev/doctor"
)

var doctorID = regexp.MustCompile(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$`)

func validateDoctorID(p *field.Path, id string) field.ErrorList {
	if !doctorID.MatchString(id) {
		return field.ErrorList{field.Invalid(p, id, "must be a UUID or a DNS-1123 label")}
	}
	return nil
}

func doctorSecretName(id string) string { return doctorPrefix + strings.ToLower(id) }

// errDoctorTooLarge refuses a dump as soon as what it compresses to passes
// what a Secret can store.
var errDoctorTooLarge = fmt.Errorf("the report compresses to more than %d bytes; at most %d are stored", maxDoctorStored, maxDoctorStored)

// cappedBuffer is the compressed dump: a write past max fails.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.Len()+len(p) > c.max {
		return 0, errDoctorTooLarge
	}
	return c.Buffer.Write(p)
}

// gzipWriters are reused: a compressor's state is most of what an upload
// holds.
var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(io.Discard) }}

// doctorHeld is what one upload holds at most: the compressed dump, and
// the compressor's state (about 800 KiB at the default level).
const doctorHeld = maxDoctorStored + 1<<20

// doctorDump is what the bridge needs to know of a dump: it is stored as
// sent, compressed while it streams in, and never decoded whole.
type doctorDump struct {
	compressed []byte
	workflowID string
	present    map[string]bool // top-level keys with a value other than null
}

// readDoctor streams a dump from r: scanned for its shape (depth, and the
// workflow's id) and gzip-compressed as it arrives, refused as soon as the
// compressed size passes maxDoctorStored. The doctor decoder's core (fuzzed
// in decode_fuzz_test.go).
func readDoctor(r io.Reader, lim limits) (doctorDump, error) {
	d := doctorDump{present: map[string]bool{}}
	out := &cappedBuffer{max: maxDoctorStored}
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(out)
	defer func() { zw.Reset(io.Discard); gzipWriters.Put(zw) }()
	sc := newScanner(io.TeeReader(r, zw), lim)
	topLevel := false
	sc.visit = func(path []frame, tok token) {
		switch len(path) {
		case 0:
			topLevel = tok.kind == '{'
		case 1:
			// Only the keys checked below: a dump of 30,000 keys must not
			// become a map of them.
			if key := strings.ToLower(path[0].key); tok.kind != 'n' && (key == "nodes" || key == "namespaces") {
				d.present[key] = true
			}
		case 2:
			if strings.EqualFold(path[0].key, "workflow") && path[1].object && strings.EqualFold(path[1].key, "id") && tok.kind == '"' {
				d.workflowID = tok.text
			}
		}
	}
	if err := sc.scan(); err != nil {
		return d, err
	}
	if !topLevel {
		return d, errBadJSON{errors.New("a doctor report is a JSON object")}
	}
	if err := zw.Close(); err != nil {
		return d, err
	}
	d.compressed = out.Bytes()
	return d, nil
}

func (s *Server) postDoctor(w http.ResponseWriter, r *http.Request, p params) {
	st := stateOf(r.Context())
	if ok, wait := s.doctorRate.allow(st.fairKey()); !ok {
		shedTotal.WithLabelValues("doctor_rate").Inc()
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many doctor reports from this client (%d in a burst, then %g a minute); retry after %ss",
			s.opts.DoctorBurst, s.opts.DoctorRate*60, retryAfter(wait)))
		return
	}
	// Compressing is the one CPU-heavy thing a client can make the bridge
	// do: at most half the cores compress at once, so uploads cannot take
	// the CPU that the fleet's check-ins need. The wait comes before the
	// body's clock starts (jsonBody), and is as long as a level's.
	wait := time.NewTimer(maxQueueWait)
	defer wait.Stop()
	select {
	case s.compressing <- struct{}{}:
	case <-wait.C:
		shedTotal.WithLabelValues("compressing").Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "the bridge is compressing as many doctor reports as it may at once; retry")
		return
	case <-r.Context().Done():
		return
	}
	defer func() { <-s.compressing }()
	body, ok := jsonBody(w, r, st.limits)
	if !ok {
		return
	}
	rep, err := readDoctor(body, st.limits)
	if err != nil {
		writeBodyError(w, err)
		return
	}
	switch {
	case (st.tokenHash != "" || st.cluster != "") && rep.workflowID == "":
		// Token mode: the dump must name the cluster that sent it.
		writeError(w, http.StatusUnprocessableEntity, required("workflow.id").Error())
		return
	case !rep.present["nodes"]:
		writeError(w, http.StatusUnprocessableEntity, required("nodes").Error())
		return
	case !rep.present["namespaces"]:
		writeError(w, http.StatusUnprocessableEntity, required("namespaces").Error())
		return
	}
	// Open mode takes a dump without a cluster: it counts as its own.
	cluster := strings.ToLower(p["uuid"])
	if rep.workflowID != "" {
		if errs := validation.ClusterID(field.NewPath("workflow", "id"), rep.workflowID); len(errs) > 0 {
			writeError(w, http.StatusUnprocessableEntity, errs.ToAggregate().Error())
			return
		}
		cluster = trainyardv1.ClusterReportName(rep.workflowID)
	}
	switch {
	case st.cluster != "":
		// Token mode: the cluster's own credential (its budget was spent).
		if st.cluster != cluster {
			authFailures.WithLabelValues("credential_of_other_cluster").Inc()
			writeError(w, http.StatusForbidden, fmt.Sprintf("this credential is cluster %s's; it cannot upload a doctor report of %s", st.cluster, cluster))
			return
		}
	case st.tokenHash != "":
		// A registration token uploads only in legacy mode, for the cluster
		// bound to it.
		if !s.admit(w, clusterIdentity(st.ns, cluster, st.tokenHash)) || !s.doctorUploader(w, r, cluster, st.tokenHash) {
			return
		}
	}
	defer s.store.Lock("doctor/" + cluster)()
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: st.ns, Name: doctorSecretName(p["uuid"]),
			Labels:      map[string]string{"app.kubernetes.io/managed-by": "trainyard", LabelDoctorReport: "true", LabelDoctorCluster: cluster},
			Annotations: map[string]string{AnnotationDoctorBytes: strconv.Itoa(len(rep.compressed))}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{doctorKey: rep.compressed},
	}
	status, msg, err := s.storeDoctor(r, sec)
	if err != nil {
		writeAPIError(w, "storing the doctor report", err)
		return
	}
	if status != 0 {
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "3600")
		}
		writeError(w, status, msg)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// doctorUploader answers 403 or 404 unless cluster has checked in with the
// registration token whose hash is hash, and (but in legacy mode) has no
// credential yet.
func (s *Server) doctorUploader(w http.ResponseWriter, r *http.Request, cluster, hash string) bool {
	cr := &trainyardv1.ClusterReport{}
	err := s.cache.Get(r.Context(), types.NamespacedName{Namespace: stateOf(r.Context()).ns, Name: cluster}, cr)
	switch {
	case apierrors.IsNotFound(err):
		writeError(w, http.StatusNotFound, fmt.Sprintf("cluster %s has not checked in: a doctor report belongs to a cluster that has", cluster))
		return false
	case err != nil:
		writeAPIError(w, "reading the cluster", err)
		return false
	case cr.Annotations[checkin.AnnotationTokenHash] != hash:
		authFailures.WithLabelValues("cluster_bound_to_other_token").Inc()
		writeError(w, http.StatusForbidden, checkin.ErrBoundElsewhere(cluster).Error())
		return false
	case cr.Annotations[trainyardv1.AnnotationCredentialHash] != "" && !s.opts.LegacyTokenBinding:
		authFailures.WithLabelValues("cluster_registered").Inc()
		writeError(w, http.StatusForbidden, "cluster "+cr.Spec.ClusterID+" is registered: upload its doctor report with its credential, not a registration token")
		return false
	}
	return true
}

// storeDoctor creates or replaces the dump Secret within the caps. A
// status other than 0 is a refusal to answer with msg.
func (s *Server) storeDoctor(r *http.Request, sec *corev1.Secret) (status int, msg string, err error) {
	ctx := r.Context()
	cluster := sec.Labels[LabelDoctorCluster]
	cur := &corev1.Secret{}
	err = s.apiReader.Get(ctx, client.ObjectKeyFromObject(sec), cur)
	switch {
	case err == nil:
		if cur.Labels[LabelDoctorReport] != "true" {
			return http.StatusConflict, fmt.Sprintf("the Secret %s was not made by trainyard; the bridge does not touch it", sec.Name), nil
		}
		if cur.Labels[LabelDoctorCluster] != cluster {
			return http.StatusConflict, fmt.Sprintf("doctor report %s belongs to another cluster", strings.TrimPrefix(sec.Name, doctorPrefix)), nil
		}
		// The newest dump under one ID replaces the previous one, as before.
		cur.Data = sec.Data
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[AnnotationDoctorBytes] = sec.Annotations[AnnotationDoctorBytes]
		return 0, "", s.api.Update(ctx, cur)
	case !apierrors.IsNotFound(err):
		return 0, "", err
	}
	// A new dump: within the caps.
	var all metav1.PartialObjectMetadataList
	all.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := s.apiReader.List(ctx, &all, client.InNamespace(s.nsOf(ctx)), client.MatchingLabels{LabelDoctorReport: "true"}); err != nil {
		return 0, "", err
	}
	var mine []metav1.PartialObjectMetadata
	for _, m := range all.Items {
		if m.Labels[LabelDoctorCluster] == cluster {
			mine = append(mine, m)
		}
	}
	slices.SortFunc(mine, func(a, b metav1.PartialObjectMetadata) int {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	total, bytes := len(all.Items), int64(0)
	for _, m := range all.Items {
		bytes += doctorBytes(m)
	}
	for len(mine) >= s.opts.MaxDoctorReports {
		old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: mine[0].Namespace, Name: mine[0].Name}}
		if err := s.api.Delete(ctx, old, client.Preconditions{UID: &mine[0].UID}); err != nil && !apierrors.IsNotFound(err) {
			return 0, "", err
		}
		total, bytes = total-1, bytes-doctorBytes(mine[0])
		mine = mine[1:]
	}
	switch size := int64(len(sec.Data[doctorKey])); {
	case total >= s.opts.MaxDoctorTotal:
		// A 4xx: the store is full for this client's new dumps, not broken.
		return http.StatusTooManyRequests, fmt.Sprintf("the bridge keeps at most %d doctor reports and has them all; "+
			"retry once an operator has deleted old ones (kubectl delete secret -l %s=true)", s.opts.MaxDoctorTotal, LabelDoctorReport), nil
	case bytes+size > s.opts.MaxDoctorBytes:
		return http.StatusTooManyRequests, fmt.Sprintf("the bridge keeps at most %d bytes of doctor reports in this tenant and holds %d; "+
			"this one (%d bytes compressed) does not fit: retry once an operator has deleted old ones (kubectl delete secret -l %s=true)",
			s.opts.MaxDoctorBytes, bytes, size, LabelDoctorReport), nil
	}
	if err := s.api.Create(ctx, sec); apierrors.IsAlreadyExists(err) {
		return http.StatusConflict, fmt.Sprintf("doctor report %s was stored meanwhile; send it again", strings.TrimPrefix(sec.Name, doctorPrefix)), nil
	} else if err != nil {
		return 0, "", err
	}
	return 0, "", nil
}

// doctorBytes is a stored dump's compressed size, from its annotation; a
// dump stored before the annotation counts as the largest one can be.
func doctorBytes(m metav1.PartialObjectMetadata) int64 {
	if n, err := strconv.ParseInt(m.Annotations[AnnotationDoctorBytes], 10, 64); err == nil && n >= 0 {
		return n
	}
	return maxDoctorStored
}

func (s *Server) getDoctor(w http.ResponseWriter, r *http.Request, p params) {
	sec, err := s.doctorSecret(r, p["uuid"])
	if apierrors.IsNotFound(err) || (err == nil && sec.Data[doctorKey] == nil) {
		writeError(w, http.StatusNotFound, "404 doctor report not found")
		return
	} else if err != nil {
		writeAPIError(w, "reading the doctor report", err)
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(sec.Data[doctorKey]))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "the stored doctor report is damaged: "+err.Error())
		return
	}
	// Streamed: the dump is never held decompressed. The stored gzip
	// checksum is checked at its end; a damaged dump aborts the answer
	// rather than end it as if it were whole.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, io.LimitReader(zr, s.opts.MaxDoctorBody+1)); err != nil {
		log.FromContext(r.Context()).Error(err, "serving a doctor report", "id", p["uuid"])
		panic(http.ErrAbortHandler)
	}
}

// doctorSecret reads the dump Secret of id, or one stored under the old
// name; a Secret without the dump label is never served.
func (s *Server) doctorSecret(r *http.Request, id string) (*corev1.Secret, error) {
	notFound := apierrors.NewNotFound(corev1.Resource("secrets"), id)
	for _, c := range []struct{ name, label string }{
		{doctorSecretName(id), LabelDoctorReport},
		{legacyDoctorPrefix + strings.ToLower(id), legacyDoctorLabel},
	} {
		sec := &corev1.Secret{}
		err := s.apiReader.Get(r.Context(), types.NamespacedName{Namespace: s.nsOf(r.Context()), Name: c.name}, sec)
		if apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return nil, err
		}
		if sec.Labels[c.label] == "true" {
			return sec, nil
		}
	}
	return nil, notFound
}
