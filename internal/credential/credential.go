// Package credential makes the secrets the bridge knows clusters by, and the
// hashes that are all the hub stores of them: a cluster's credential, which
// the bridge issues at registration, and a reissue token, which an operator
// makes (`kubectl trainyard cluster reissue`) to let one revoked cluster
// register once more.
package credential

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// The prefixes tell the bridge what a bearer token is before any look-up; a
// registration token may start with neither.
const (
	// ClusterPrefix starts every cluster credential.
	ClusterPrefix = "tyc."
	// ReissuePrefix starts every reissue token.
	ReissuePrefix = "tyr."
)

// New is a random secret with prefix (32 random bytes) and its hash.
func New(prefix string) (secret, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24)
	secret = prefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, Hash(secret)
}

// Hash is the SHA-256 (hex) of secret: what the hub stores.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// IsCluster tells a cluster credential.
func IsCluster(tok string) bool { return strings.HasPrefix(tok, ClusterPrefix) }

// IsReissue tells a reissue token.
func IsReissue(tok string) bool { return strings.HasPrefix(tok, ReissuePrefix) }
