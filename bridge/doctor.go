package bridge

import (
	"bytes"
	"compress/gzip"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Doctor reports are diagnostic dumps, not fleet state: they are stored
// gzip-compressed in a Secret each (they may hold cluster details), never in
// a custom resource.
const (
	doctorKey = "report.json.gz"
	// maxDoctorStored keeps the Secret well under the API's 1 MiB object limit.
	maxDoctorStored = 768 << 10
)

var doctorID = regexp.MustCompile(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$`)

func doctorSecretName(id string) string { return "trainyard-doctor-" + strings.ToLower(id) }

func (s *Server) postDoctor(w http.ResponseWriter, r *http.Request, p params) {
	id := p["uuid"]
	if !doctorID.MatchString(id) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a UUID or a DNS-1123 label", id))
		return
	}
	var rep DoctorReport
	if !decodeJSON(w, r, s.opts.MaxDoctorBody, &rep) {
		return
	}
	switch {
	case rep.Nodes == nil || string(rep.Nodes) == "null":
		writeError(w, http.StatusUnprocessableEntity, required("nodes").Error())
		return
	case rep.Namespaces == nil || string(rep.Namespaces) == "null":
		writeError(w, http.StatusUnprocessableEntity, required("namespaces").Error())
		return
	}
	raw, _ := json.Marshal(rep)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	if buf.Len() > maxDoctorStored {
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("the report compresses to %d bytes; at most %d are stored", buf.Len(), maxDoctorStored))
		return
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.opts.Namespace, Name: doctorSecretName(id),
			Labels: map[string]string{"app.kubernetes.io/managed-by": "trainyard", "trainyard.dev/doctor": "true"}},
		Data: map[string][]byte{doctorKey: buf.Bytes()},
	}
	err := s.api.Create(r.Context(), sec)
	if apierrors.IsAlreadyExists(err) {
		// The newest dump replaces the previous one, as before.
		err = s.api.Update(r.Context(), sec)
		if apierrors.IsConflict(err) || apierrors.IsInvalid(err) {
			cur := &corev1.Secret{}
			if err = s.apiReader.Get(r.Context(), client.ObjectKeyFromObject(sec), cur); err == nil {
				cur.Data = sec.Data
				err = s.api.Update(r.Context(), cur)
			}
		}
	}
	if err != nil {
		writeAPIError(w, "storing the doctor report", err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) getDoctor(w http.ResponseWriter, r *http.Request, p params) {
	if bearer(r) != "" {
		// A Kubernetes identity that RBAC lets read Secrets here.
		if !s.authorize(w, r, "get", "", "secrets") {
			return
		}
	} else if !s.doctorAuthorized(r) {
		authFailures.WithLabelValues("doctor_basic_auth").Inc()
		w.Header().Set("WWW-Authenticate", `Basic realm="trainyard doctor"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated for invalid credentials")
		return
	}
	id := p["uuid"]
	sec := &corev1.Secret{}
	err := s.apiReader.Get(r.Context(), types.NamespacedName{Namespace: s.opts.Namespace, Name: doctorSecretName(id)}, sec)
	if apierrors.IsNotFound(err) || (err == nil && sec.Data[doctorKey] == nil) || !doctorID.MatchString(id) {
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
	body, err := io.ReadAll(io.LimitReader(zr, s.opts.MaxDoctorBody+1))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "the stored doctor report is damaged: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// doctorAuthorized checks HTTP basic auth against the credentials Secret.
func (s *Server) doctorAuthorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok || s.opts.DoctorAuthSecret == "" {
		return false
	}
	sec := &corev1.Secret{}
	if err := s.apiReader.Get(r.Context(), types.NamespacedName{Namespace: s.opts.Namespace, Name: s.opts.DoctorAuthSecret}, sec); err != nil {
		return false
	}
	wantUser, wantPass := sec.Data["username"], sec.Data["password"]
	if len(wantUser) == 0 || len(wantPass) == 0 {
		return false
	}
	u := subtle.ConstantTimeCompare([]byte(user), wantUser)
	pw := subtle.ConstantTimeCompare([]byte(pass), wantPass)
	return u&pw == 1
}
