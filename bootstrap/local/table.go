package local

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/regwire/regwire/api/v1alpha1"
)

// resource is a regwire resource to print.
type resource struct {
	Name       string
	Namespaced bool
}

// tableAccept asks the API server for its server-side table, the one kubectl get prints:
// the columns come from the CRD's additionalPrinterColumns.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io"

// renderTables prints each resource's table across all namespaces.
func renderTables(ctx context.Context, cfg *rest.Config, resources []resource) (string, error) {
	rc := rest.CopyConfig(cfg)
	rc.GroupVersion = &v1alpha1.GroupVersion
	rc.APIPath = "/apis"
	rc.NegotiatedSerializer = serializer.WithoutConversionCodecFactory{CodecFactory: scheme.Codecs}
	client, err := rest.RESTClientFor(rc)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, r := range resources {
		raw, err := client.Get().Resource(r.Name).SetHeader("Accept", tableAccept).Do(ctx).Raw()
		if err != nil {
			return "", fmt.Errorf("listing %s: %w", r.Name, err)
		}
		t := &metav1.Table{}
		if err := json.Unmarshal(raw, t); err != nil {
			return "", fmt.Errorf("decoding %s table: %w", r.Name, err)
		}
		if i > 0 {
			b.WriteString("\n")
		}
		writeTable(&b, r, t, time.Now())
	}
	return b.String(), nil
}

// writeTable formats t like kubectl get -A -o wide: every column, dates as ages.
func writeTable(b *strings.Builder, r resource, t *metav1.Table, now time.Time) {
	if len(t.Rows) == 0 {
		fmt.Fprintf(b, "No %s found.\n", r.Name)
		return
	}
	w := tabwriter.NewWriter(b, 0, 8, 3, ' ', 0)
	var cols []int
	var header []string
	if r.Namespaced {
		header = append(header, "NAMESPACE")
	}
	for i, c := range t.ColumnDefinitions {
		cols = append(cols, i)
		header = append(header, strings.ToUpper(c.Name))
	}
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, row := range t.Rows {
		var cells []string
		if r.Namespaced {
			var meta metav1.PartialObjectMetadata
			_ = json.Unmarshal(row.Object.Raw, &meta)
			cells = append(cells, meta.Namespace)
		}
		for _, i := range cols {
			cells = append(cells, cell(t.ColumnDefinitions[i], row.Cells[i], now))
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	_ = w.Flush()
}

func cell(def metav1.TableColumnDefinition, v any, now time.Time) string {
	if v == nil {
		return "<none>"
	}
	s := fmt.Sprint(v)
	if s == "" {
		return "<none>"
	}
	if def.Type == "date" {
		if ts, err := time.Parse(time.RFC3339, s); err == nil {
			return duration.HumanDuration(now.Sub(ts))
		}
	}
	return s
}
