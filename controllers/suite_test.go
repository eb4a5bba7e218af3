package controllers_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers"
	"github.com/regwire/regwire/controllers/registrymirror"
	"github.com/regwire/regwire/internal/controlplane"
	"github.com/regwire/regwire/internal/testutil"
)

// operatorNamespace is where the controllers publish mirrors for the agents.
const operatorNamespace = "regwire-system"

// restConfig reaches the test API server as an administrator.
var restConfig *rest.Config

// k8s is a direct (uncached) client of the test API server, on which the regwire
// controllers run for the whole package.
var k8s client.Client

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()

	restConfig = cp.Config
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	log := zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapLevel()))
	ctrl.SetLogger(log)

	if k8s, err = client.New(cp.Config, client.Options{Scheme: s}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := controllers.NewManager(cp.Config, controllers.Options{
		Namespace: operatorNamespace, Agent: registrymirror.DefaultAgentOptions("regwire:test"), SyncProgressInterval: 200 * time.Millisecond,
		// Long enough for the copies that must stay under way, short enough for stall tests.
		StallTimeout: 10 * time.Second,
		Manager:      ctrl.Options{Logger: log, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()

	return m.Run()
}

// zapLevel keeps controller logs quiet unless REGWIRE_TEST_VERBOSE is set.
func zapLevel() zapcore.Level {
	if os.Getenv("REGWIRE_TEST_VERBOSE") != "" {
		return -1
	}
	return 2
}

// eventually polls cond until it returns nil or 20s pass, then fails with its error.
func eventually(t *testing.T, cond func() error) {
	const timeout = 20 * time.Second
	t.Helper()
	if err := testutil.Poll(timeout, 50*time.Millisecond, cond); err != nil {
		t.Fatalf("after %s: %v", timeout, err)
	}
}

// deleteAndWait deletes a RegistryMirror and waits until its finalizer has let it go.
func deleteAndWait(t *testing.T, rm *v1alpha1.RegistryMirror) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Delete(ctx, rm); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(rm), &v1alpha1.RegistryMirror{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("RegistryMirror %s still there (%w)", rm.Name, err)
	})
}

// update applies mutate to the latest version of obj and writes it, again on a conflict
// with the controllers' own writes.
func update(t *testing.T, obj client.Object, mutate func()) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		return k8s.Update(context.Background(), obj)
	})
	if err != nil {
		t.Fatal(err)
	}
}
