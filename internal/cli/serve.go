package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/gateway"
	"github.com/downshift-dev/downshift/internal/guard"
	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/record"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/telemetry"
	"github.com/downshift-dev/downshift/internal/ui"
	"github.com/downshift-dev/downshift/internal/web"
)

func newServeCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the OpenAI-compatible gateway that records every call",
		Long: `serve runs the gateway: point an agent's OpenAI base URL at http://LISTEN/v1 and
every chat completion is answered by the configured backend and recorded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath, os.Environ())
			if err != nil {
				return err
			}
			return runServe(cmd.Context(), cfg, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML config file (DOWNSHIFT_* environment variables override it)")
	return cmd
}

// runServe serves until ctx ends, then drains: stop accepting, finish in-flight
// requests, flush the record queue, close the store.
func runServe(ctx context.Context, cfg config.Config, logOut io.Writer) error {
	log := newLogger(cfg.Log, logOut)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv, err := startServer(ctx, cfg, ln, log)
	if err != nil {
		ln.Close()
		return err
	}
	log.Info("downshift gateway listening", "addr", "http://"+ln.Addr().String()+"/v1",
		"store", cfg.Store.Driver, "models", len(cfg.Models))
	<-ctx.Done()
	log.Info("shutting down: draining requests and the record queue", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return srv.shutdown(sctx)
}

// workloadRefresh is how often the server looks for a newer workload analysis.
const workloadRefresh = 30 * time.Second

// server is a running gateway with its recorder, keys and store: the composition root.
type server struct {
	http     *http.Server
	gateway  *gateway.Gateway
	policies *policy.Refresher
	monitor  *policy.Monitor
	recorder *record.Recorder
	tracer   *telemetry.Tracer // nil: traces are off
	keys     *auth.Keys
	assigner *onlineAssigner
	store    store.Store
	log      *slog.Logger
	served   chan error
	// stopBackground ends the background refreshes; background waits for them.
	stopBackground context.CancelFunc
	background     *sync.WaitGroup
	addr           string
}

// startServer builds everything from cfg and serves on ln until shutdown: the
// OpenAI-compatible API at /v1 (behind gateway keys unless auth.open), the admin API at
// /api (behind admin keys, always), and the operations endpoints.
func startServer(ctx context.Context, cfg config.Config, ln net.Listener, log *slog.Logger) (_ *server, err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	priv, err := newPrivacy(cfg.Privacy, log)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg.Store.Driver, cfg.Store.DSN)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { st.Close() })
	// The configured models, and those added with `downshift models add`.
	merged, err := runtimeConfig(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	cat, err := backend.NewCatalog(merged, os.Getenv)
	if err != nil {
		return nil, err
	}
	// Traces, when the OTEL_* environment asks for them: one span per call.
	tracer, err := telemetry.FromEnv(ctx, telemetry.Options{Backends: backendURLs(merged.Backends),
		Logger: log.With("component", "telemetry")})
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { _ = tracer.Shutdown(context.Background()) })
	var callTracer gateway.CallTracer // a nil *telemetry.Tracer must stay a nil interface
	if tracer != nil {
		callTracer = tracer
		log.Info("exporting a trace span of every call over OTLP/HTTP", "endpoint", telemetry.Endpoint())
	}

	keys := auth.NewKeys(st, auth.Options{Logger: log.With("component", "auth")})
	if err := keys.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("loading keys: %w", err)
	}
	gatewayKeys, adminKeys := keys.Counts()
	var gwAuth gateway.Authenticator = keys
	switch {
	case cfg.Auth.Open:
		gwAuth = nil
		log.Warn("auth.open is set: the gateway serves agents without keys, and records no client id")
	case gatewayKeys == 0:
		log.Warn("no gateway keys: every agent request will get 401 until one is made with `downshift keys create --kind gateway`")
	}
	if adminKeys == 0 {
		log.Info("no admin keys: the admin API (/api) refuses every request until one is made with `downshift keys create --kind admin`")
	}
	// Background refreshes (keys, the workload model) run until shutdown.
	bgCtx, stopBackground := context.WithCancel(context.Background())
	background := &sync.WaitGroup{}
	background.Go(func() { keys.Run(bgCtx, cfg.Auth.RefreshInterval) })
	undo = append(undo, func() { stopBackground(); background.Wait() })

	assigner := &onlineAssigner{st: st, log: log.With("component", "workload")}
	if err := assigner.refresh(ctx); err != nil {
		log.Warn("no online workload assignment: loading the latest analysis failed", "err", err)
	}
	background.Go(func() { assigner.run(bgCtx, workloadRefresh) })

	// Shift policies: a snapshot refreshed on change, and a monitor that steps a
	// policy back (or forward) when the candidate's results say so.
	policies := policy.NewRefresher(st, policy.RefresherOptions{Logger: log.With("component", "policy")})
	if err := policies.Refresh(ctx); err != nil {
		log.Warn("no shift policies loaded: every call goes to the model it names until they are", "err", err)
	}
	background.Go(func() { policies.Run(bgCtx, cfg.Shift.RefreshInterval) })
	monitor, err := policy.NewMonitor(policy.MonitorOptions{
		Policies:   policies,
		Step:       policy.SaveStep(st, policies),
		Logger:     log.With("component", "policy"),
		Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	background.Go(func() { monitor.Run(bgCtx) })

	rec, err := record.New(record.Options{
		Store: st,
		Prepare: func(c *store.Call) error {
			assigner.assign(c) // needs the request as sent, so before redaction
			return priv.prepare(c)
		},
		QueueSize:     cfg.Record.QueueSize,
		BatchSize:     cfg.Record.BatchSize,
		FlushInterval: cfg.Record.FlushInterval,
		Overflow:      record.Overflow(cfg.Record.Overflow),
		BlockTimeout:  cfg.Record.BlockTimeout,
		Logger:        log.With("component", "record"),
		Registerer:    reg,
	})
	if err != nil {
		return nil, err
	}
	rec.Start()
	undo = append(undo, func() { _ = rec.Close(context.Background()) })

	gw, err := gateway.New(gateway.Options{
		Catalog:      cat,
		Recorder:     rec,
		Keys:         gwAuth,
		Ready:        st.Check,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Logger:       log.With("component", "gateway"),
		Registerer:   reg,
		Gatherer:     reg,

		Policies:          policies,
		Workloads:         assigner,
		Observer:          monitor,
		RefusalPhrases:    refusalPhrases(cfg.Shift),
		SecondConcurrency: cfg.Shift.SecondConcurrency,
		SecondTimeout:     cfg.Shift.SecondTimeout,
		Tracer:            callTracer,
	})
	if err != nil {
		return nil, err
	}
	// A policy saved through this server's API or dashboard takes effect at once here;
	// other servers on the store load it at their next refresh.
	policyChanged := func(ctx context.Context) {
		if err := policies.Refresh(ctx); err != nil {
			log.Warn("loading the policy just saved failed; it takes effect at the next refresh", "err", err)
		}
	}
	knownModel := func(name string) bool { _, ok := cat.Resolve(name); return ok }
	api, err := web.New(web.Options{Store: st, Keys: keys, OpenCall: priv.keyring.OpenCall, Logger: log.With("component", "api"),
		PolicyChanged: policyChanged, KnownModel: knownModel})
	if err != nil {
		return nil, err
	}
	dash, err := ui.New(ui.Options{Store: st, Keys: keys, OpenCall: priv.keyring.OpenCall,
		Models:        func() []ui.Model { return ui.CatalogModels(cat) },
		PolicyChanged: policyChanged, KnownModel: knownModel, SecureCookies: cfg.UI.SecureCookies,
		Logger: log.With("component", "ui")})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	mux.Handle("/ui/", dash)
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	mux.Handle("/", gw)

	s := &server{
		gateway:  gw,
		policies: policies,
		monitor:  monitor,
		http: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		recorder:       rec,
		tracer:         tracer,
		keys:           keys,
		assigner:       assigner,
		store:          st,
		log:            log,
		served:         make(chan error, 1),
		stopBackground: stopBackground,
		background:     background,
		addr:           ln.Addr().String(),
	}
	go func() { s.served <- s.http.Serve(ln) }()
	return s, nil
}

// backendURLs maps the backends' names to their base URLs.
func backendURLs(bs []config.Backend) map[string]string {
	m := make(map[string]string, len(bs))
	for _, b := range bs {
		m[b.Name] = b.URL
	}
	return m
}

// refreshWorkloads makes the server load the latest workload analysis now rather than
// at its next refresh.
func (s *server) refreshWorkloads(ctx context.Context) error { return s.assigner.refresh(ctx) }

// refreshPolicies makes the server load the stored policies now rather than at its
// next refresh.
func (s *server) refreshPolicies(ctx context.Context) error { return s.policies.Refresh(ctx) }

// refusalPhrases are the not_refusal guard's phrases: the configured ones, or the
// default list.
func refusalPhrases(c config.Shift) []string {
	if len(c.RefusalPhrases) > 0 {
		return c.RefusalPhrases
	}
	return guard.DefaultRefusalPhrases()
}

// shutdown stops accepting, waits for in-flight requests and their second answers
// (each call enqueues its record once both are done), flushes the recorder, the calls'
// trace spans and the keys' last use, and closes the store.
func (s *server) shutdown(ctx context.Context) error {
	var errs []error
	if err := s.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("draining requests: %w", err))
	}
	if err := <-s.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	// Second answers (shadow, verification) finish after their client's request;
	// each enqueues its call's record when it is in.
	if err := s.gateway.Drain(ctx); err != nil {
		errs = append(errs, err)
	}
	// Every call's span is made by now. They are flushed while the recorder flushes,
	// so that a slow collector takes no time from the records.
	traced := make(chan error, 1)
	go func() { traced <- s.tracer.Shutdown(ctx) }()
	if err := s.recorder.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("flushing records: %w", err))
	}
	st := s.recorder.Stats()
	s.log.Info("recorder drained", "accepted", st.Accepted, "written", st.Written, "dropped", st.Dropped)
	s.stopBackground()
	s.background.Wait()
	if err := s.keys.Flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("saving key use: %w", err))
	}
	if err := s.store.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := <-traced; err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.ToLower(c.Format) == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
