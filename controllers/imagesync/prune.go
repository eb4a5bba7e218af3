package imagesync

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/internal/imagecopy"
)

// An ownership record says which tags of which target repository an ImageSync wrote, and
// the digest it wrote: a ConfigMap in the operator's namespace (which tenants cannot
// write, unlike a tag annotation in the registry or the ImageSync's own status), named by
// a hash of the ImageSync's namespace and name, holding the ImageSync's UID (a new
// ImageSync of the same name starts a new record). Only tags in it are ever pruned.
const (
	recordLabel   = "regwire.dev/ownership-record"
	recordKey     = "record.json"
	recordPrefix  = "regwire-owned-"
	maxShownPrune = 20
)

// record is an ownership record's content.
type record struct {
	// ImageSync is namespace/name, UID its UID.
	ImageSync string    `json:"imageSync"`
	UID       types.UID `json:"uid"`
	// Repository is the target repository (host/path as the copy reaches it).
	Repository string `json:"repository"`
	// Tags are the tags written, with the digest written and when.
	Tags map[string]ownedTag `json:"tags"`
}

type ownedTag struct {
	Digest string    `json:"digest"`
	At     time.Time `json:"at"`
}

func recordName(key types.NamespacedName) string {
	sum := sha256.Sum256([]byte(key.Namespace + "/" + key.Name))
	return recordPrefix + hex.EncodeToString(sum[:])[:20]
}

// records reads and writes ownership records: reads straight from the API server (the
// record is the truth a restarted manager starts from), writes through the client.
type records struct {
	reader    client.Reader
	writer    client.Client
	namespace string
}

// load returns the ImageSync's record for repository (an empty one when it has none, or
// one of another UID or repository: those tags are not this ImageSync's).
func (s records) load(ctx context.Context, key types.NamespacedName, uid types.UID, repository string) (record, *corev1.ConfigMap, error) {
	fresh := record{ImageSync: key.String(), UID: uid, Repository: repository, Tags: map[string]ownedTag{}}
	cm := &corev1.ConfigMap{}
	err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: recordName(key)}, cm)
	if apierrors.IsNotFound(err) {
		return fresh, nil, nil
	} else if err != nil {
		return record{}, nil, fmt.Errorf("reading the ownership record: %w", err)
	}
	// A record of another ImageSync (UID) or repository, or one that does not decode, holds
	// nothing of this one's.
	if rec, ok := decodeRecord(cm); ok && rec.UID == uid && rec.Repository == repository {
		return rec, cm, nil
	}
	return fresh, cm, nil
}

// decodeRecord reads a record's ConfigMap.
func decodeRecord(cm *corev1.ConfigMap) (record, bool) {
	var rec record
	if json.Unmarshal([]byte(cm.Data[recordKey]), &rec) != nil || rec.Tags == nil {
		return record{}, false
	}
	return rec, true
}

// save writes the record (creating its ConfigMap when cm is nil) and returns the
// ConfigMap as written, for the next save.
func (s records) save(ctx context.Context, key types.NamespacedName, rec record, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if cm == nil {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: recordName(key),
			Labels:      map[string]string{recordLabel: "true"},
			Annotations: map[string]string{"regwire.dev/imagesync": key.String()}}}
		cm.Data = map[string]string{recordKey: string(data)}
		err = s.writer.Create(ctx, cm)
	} else {
		cm = cm.DeepCopy()
		cm.Data = map[string]string{recordKey: string(data)}
		err = s.writer.Update(ctx, cm)
	}
	if err != nil {
		return nil, fmt.Errorf("writing the ownership record: %w", err)
	}
	return cm, nil
}

// protected returns the digests other ImageSyncs' records hold in repository.
func (s records) protected(ctx context.Context, key types.NamespacedName, repository string) (map[string]bool, error) {
	list := &corev1.ConfigMapList{}
	if err := s.reader.List(ctx, list, client.InNamespace(s.namespace), client.MatchingLabels{recordLabel: "true"}); err != nil {
		return nil, fmt.Errorf("reading the other ownership records: %w", err)
	}
	out := map[string]bool{}
	for i := range list.Items {
		if list.Items[i].Name == recordName(key) {
			continue
		}
		rec, ok := decodeRecord(&list.Items[i])
		if !ok || rec.Repository != repository {
			continue
		}
		for _, t := range rec.Tags {
			out[t.Digest] = true
		}
	}
	return out, nil
}

// forget deletes the record of an ImageSync that is gone.
func (s records) forget(ctx context.Context, key types.NamespacedName) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: recordName(key)}}
	return client.IgnoreNotFound(s.writer.Delete(ctx, cm))
}

// pruneRun is one sync's prune: it records the tags the sync wrote, then removes those
// of the record no longer selected (beyond keepLast), and takes out of the record what is
// no longer the ImageSync's. The record is written before anything is deleted and again
// after: a manager stopped in between finds the deleted tags gone and drops them, and
// never deletes a tag the record does not hold.
type pruneRun struct {
	records records
	key     types.NamespacedName
	uid     types.UID
	spec    v1alpha1.PruneSpec
	engine  interface {
		Prune(ctx context.Context, candidates []imagecopy.Owned, protected func(string) bool, dryRun bool) ([]imagecopy.Pruned, error)
	}
	repository string
	now        time.Time
}

func (p pruneRun) run(ctx context.Context, selected []string, results []imagecopy.Result) (*v1alpha1.PruneStatus, []imagecopy.Pruned, error) {
	rec, cm, err := p.records.load(ctx, p.key, p.uid, p.repository)
	if err != nil {
		return nil, nil, err
	}
	changed := false
	for _, res := range results {
		old, owned := rec.Tags[res.Tag]
		switch {
		case res.Err != nil:
		case !res.UpToDate && res.TargetDigest != "" && !p.spec.DryRun:
			rec.Tags[res.Tag] = ownedTag{Digest: res.TargetDigest, At: p.now}
			changed = changed || old.Digest != res.TargetDigest || !owned
		case owned && res.UpToDate && old.Digest != res.TargetDigest:
			delete(rec.Tags, res.Tag) // someone else's now, though at the source's digest
			changed = true
		}
	}
	if changed {
		if cm, err = p.records.save(ctx, p.key, rec, cm); err != nil {
			return nil, nil, err
		}
	}
	// Candidates: recorded, no longer selected; the keepLast most recently written stay.
	var gone []string
	for tag := range rec.Tags {
		if !slices.Contains(selected, tag) {
			gone = append(gone, tag)
		}
	}
	slices.SortFunc(gone, func(a, b string) int {
		return cmp.Or(rec.Tags[b].At.Compare(rec.Tags[a].At), strings.Compare(a, b))
	})
	st := &v1alpha1.PruneStatus{}
	keep := min(int(p.spec.KeepLast), len(gone))
	st.Kept = int32(keep)
	var candidates []imagecopy.Owned
	for _, tag := range gone[keep:] {
		candidates = append(candidates, imagecopy.Owned{Tag: tag, Digest: rec.Tags[tag].Digest})
	}
	if len(candidates) == 0 {
		return st, nil, nil
	}
	protected, err := p.records.protected(ctx, p.key, p.repository)
	if err != nil {
		return nil, nil, err
	}
	pruned, err := p.engine.Prune(ctx, candidates, func(d string) bool { return protected[d] }, p.spec.DryRun)
	if err != nil {
		return nil, nil, err
	}
	var firstErr error
	for _, r := range pruned {
		switch {
		case r.Err != nil:
			firstErr = cmp.Or(firstErr, r.Err)
		case r.Removed && p.spec.DryRun:
			if len(st.WouldRemove) < maxShownPrune {
				st.WouldRemove = append(st.WouldRemove, r.Tag)
			}
		case r.Removed, r.Kept == imagecopy.KeptGone, r.Kept == imagecopy.KeptRewritten:
			switch {
			case r.Removed:
				st.Removed++
			case r.Kept == imagecopy.KeptRewritten:
				st.Kept++ // someone else's now: it stays, out of the record
			}
			delete(rec.Tags, r.Tag)
		default:
			st.Kept++
		}
	}
	if firstErr != nil {
		st.Error = conditions.Cut(firstErr.Error(), maxImageError)
	}
	if !p.spec.DryRun && len(pruned) > 0 {
		if _, err := p.records.save(ctx, p.key, rec, cm); err != nil {
			return st, pruned, err
		}
	}
	return st, pruned, nil
}
