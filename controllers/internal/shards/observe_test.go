package shards

import (
	"fmt"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func member(c *Coordinator, id, resourceVersion string) coordinationv1.Lease {
	return coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name + "-member-" + id, ResourceVersion: resourceVersion,
			Labels: c.labels("member"), Annotations: map[string]string{AnnotationCount: fmt.Sprint(c.Shards)}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(id), LeaseDurationSeconds: ptr.To[int32](3)},
	}
}

func TestReplicasThatCameAndWentAreForgottenAndOneMadeAgainIsLiveFromWhenItAppears(t *testing.T) {
	t.Parallel()
	c := &Coordinator{Name: "copies", Shards: 4, Identity: "a", Timings: Timings{LeaseDuration: 3 * time.Second}, seen: map[string]observation{}}
	t0 := time.Unix(1_000_000, 0)
	// A rollout after rollout: each replica's membership seen once, then gone.
	for i := range 1000 {
		c.observe(t0, []coordinationv1.Lease{member(c, fmt.Sprintf("r-%d", i), "1")})
	}
	c.observe(t0, nil)
	if len(c.seen) != 0 {
		t.Fatalf("%d Leases that are gone are still remembered", len(c.seen))
	}
	// A Lease made again under a former name counts from when it appears, not from before.
	c.observe(t0, []coordinationv1.Lease{member(c, "b", "7")})
	c.observe(t0.Add(time.Second), nil)
	members, _, _ := c.observe(t0.Add(10*time.Second), []coordinationv1.Lease{member(c, "b", "7")})
	if !slices.Equal(members, []string{"a", "b"}) {
		t.Errorf("members %v, want [a b]: b's Lease appeared again just now", members)
	}
	members, _, _ = c.observe(t0.Add(13*time.Second), []coordinationv1.Lease{member(c, "b", "7")})
	if !slices.Equal(members, []string{"a"}) {
		t.Errorf("members %v, want [a]: b's Lease has not been renewed for a whole lease", members)
	}
}
