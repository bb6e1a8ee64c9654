package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"

	"k8s.io/client-go/rest"
)

// listPipelined reads every object of a kind (those the field selector matches, when
// it is not empty) in pages of limit (0: in one request), as kubectl does, but decodes each page while the API server encodes the next, on
// every core, keeping the order. For a fleet's reports the API server's
// encoding and the client's decoding are each a large share of the wait
// (make bench-plugin); overlapping them takes most of the client's share
// off it. (One unpaged request was slower: the API server sends it only
// once it is whole, so nothing overlaps.)
//
// rv, when set, asks for the list as it was at that resourceVersion (several
// lists that must agree, as outdated's); it returns the resourceVersion the
// list was read at.
func listPipelined[L any, T any](ctx context.Context, rc rest.Interface, resource, ns, selector, rv string, limit int, items func(*L) []T) ([]T, string, error) {
	var all []T
	at, err := listPages(ctx, rc, resource, ns, selector, rv, limit, items, func(page []T) error {
		all = append(all, page...)
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return all, at, nil
}

// listPages is listPipelined handing each page to each, in order, as it is
// decoded, so that a caller keeps only what it takes of a page (`fleet`'s
// rows, not 100,000 reports) and can print before the last page arrives.
// An error from each stops the list.
func listPages[L any, T any](ctx context.Context, rc rest.Interface, resource, ns, selector, rv string, limit int,
	items func(*L) []T, each func([]T) error) (string, error) {
	type page struct {
		body []byte
		out  chan decoded[T]
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan page, runtime.GOMAXPROCS(0))
	fetchErr := make(chan error, 1)
	var listRV string // the fetcher's; read after fetchErr
	go func() {
		defer close(pages)
		cont := ""
		for {
			req := rc.Get().Resource(resource)
			if limit > 0 {
				req = req.Param("limit", strconv.Itoa(limit))
			}
			if ns != "" {
				req = req.Namespace(ns)
			}
			if selector != "" {
				req = req.Param("fieldSelector", selector)
			}
			if cont != "" {
				req = req.Param("continue", cont) // it carries the first page's resourceVersion
			} else if rv != "" {
				req = req.Param("resourceVersion", rv).Param("resourceVersionMatch", "Exact")
			}
			body, err := req.DoRaw(ctx)
			if err != nil {
				fetchErr <- err
				return
			}
			p := page{body: body, out: make(chan decoded[T], 1)}
			go func() {
				var l L
				if err := json.Unmarshal(p.body, &l); err != nil {
					p.out <- decoded[T]{err: fmt.Errorf("decoding a page of %s: %w", resource, err)}
					return
				}
				p.out <- decoded[T]{items: items(&l)}
			}()
			select {
			case pages <- p:
			case <-ctx.Done():
				fetchErr <- ctx.Err()
				return
			}
			var at string
			if cont, at, err = metadataOf(body); err != nil {
				fetchErr <- err
				return
			}
			if listRV == "" {
				listRV = at
			}
			if cont == "" {
				fetchErr <- nil
				return
			}
		}
	}()
	for p := range pages {
		d := <-p.out
		if d.err != nil {
			return "", d.err // cancel stops the fetching
		}
		if err := each(d.items); err != nil {
			return "", err
		}
	}
	if err := <-fetchErr; err != nil {
		return "", err
	}
	return listRV, nil
}

type decoded[T any] struct {
	items []T
	err   error
}

// metadataOf is a list page's metadata.continue and resourceVersion, read
// without decoding the whole page first: the API server writes a list's keys
// in order (apiVersion, items, kind, metadata), so the list's metadata is
// the last "metadata" key of the body. A body laid out otherwise is decoded
// whole.
func metadataOf(body []byte) (cont, rv string, err error) {
	var tail struct {
		Continue        string `json:"continue"`
		ResourceVersion string `json:"resourceVersion"`
	}
	// The tail must be exactly the metadata object and the list's closing
	// brace: json.Unmarshal takes one whole value, so an item's metadata
	// (were the list laid out otherwise) cannot pass for the list's.
	if i := bytes.LastIndex(body, []byte(`"metadata":`)); i >= 0 {
		rest := bytes.TrimRight(body[i+len(`"metadata":`):], "\n \t\r")
		if rest, ok := bytes.CutSuffix(rest, []byte("}")); ok && json.Unmarshal(rest, &tail) == nil {
			return tail.Continue, tail.ResourceVersion, nil
		}
	}
	var whole struct {
		Metadata struct {
			Continue        string `json:"continue"`
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(body, &whole); err != nil {
		return "", "", fmt.Errorf("reading a list page: %w", err)
	}
	return whole.Metadata.Continue, whole.Metadata.ResourceVersion, nil
}
