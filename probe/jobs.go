package main

// probe jobs NAME...: the init container of a Kubernetes pod whose service dependsOn a job. It
// waits until each Job of the pod's namespace has completed and exits 0; it exits 1 at once when
// one has failed (naming it, with the command that shows its logs), so the pod never starts
// against a half-migrated store. The chart mounts a service account token into this container
// alone; its Role may get exactly these Jobs and nothing else.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

const accountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// jobStatus is what this reads of a batch/v1 Job.
type jobStatus struct {
	Status struct {
		Active     int `json:"active"`
		Failed     int `json:"failed"`
		Conditions []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
}

type apiClient struct {
	tls       *tls.Config
	addr      string
	namespace string
}

func newAPIClient() (*apiClient, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("KUBERNETES_SERVICE_HOST/PORT are not set: `probe jobs` runs in a Kubernetes pod")
	}
	ca, err := os.ReadFile(accountDir + "/ca.crt")
	if err != nil {
		return nil, fmt.Errorf("no cluster CA (%v): the chart mounts the service account token into this container", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s/ca.crt holds no PEM certificate", accountDir)
	}
	ns, err := os.ReadFile(accountDir + "/namespace")
	if err != nil {
		return nil, fmt.Errorf("no namespace file (%v)", err)
	}
	return &apiClient{
		// the API server's certificate names kubernetes.default.svc and the Service's address
		tls:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: "kubernetes.default.svc"},
		addr:      net.JoinHostPort(host, port),
		namespace: strings.TrimSpace(string(ns)),
	}, nil
}

// get sends one HTTP/1.0 GET (the answer ends when the server closes: no chunked encoding to
// read) and returns the status code and up to 1 MiB of the body. net/http would triple the binary.
func (c *apiClient) get(path, token string) (int, []byte, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", c.addr, c.tls)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: kubernetes.default.svc\r\nAuthorization: Bearer %s\r\nAccept: application/json\r\nUser-Agent: releaser-probe\r\n\r\n", path, token); err != nil {
		return 0, nil, err
	}
	r := bufio.NewReader(io.LimitReader(conn, 1<<20))
	status, err := r.ReadString('\n')
	if err != nil {
		return 0, nil, fmt.Errorf("no HTTP status line: %v", err)
	}
	fields := strings.Fields(status)
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/") {
		return 0, nil, fmt.Errorf("not an HTTP answer: %q", strings.TrimSpace(status))
	}
	code, err := strconv.Atoi(fields[1])
	if err != nil {
		return 0, nil, fmt.Errorf("not an HTTP status: %q", fields[1])
	}
	for { // headers, up to the blank line
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("the answer ends in its headers: %v", err)
		}
		if strings.TrimSpace(line) == "" {
			break
		}
	}
	body, err := io.ReadAll(r)
	return code, body, err
}

// job reads one Job: (nil, nil) when it does not exist (yet: Helm creates it with the release).
func (c *apiClient) job(name string) (*jobStatus, error) {
	token, err := os.ReadFile(accountDir + "/token") // read each time: a projected token rotates
	if err != nil {
		return nil, fmt.Errorf("no service account token (%v)", err)
	}
	code, body, err := c.get(fmt.Sprintf("/apis/batch/v1/namespaces/%s/jobs/%s", c.namespace, name), strings.TrimSpace(string(token)))
	if err != nil {
		return nil, err
	}
	switch {
	case code == 404:
		return nil, nil
	case code == 401 || code == 403:
		return nil, fmt.Errorf("HTTP %d reading job %s: this pod's service account may not get it (the chart's Role <service>-jobs grants exactly that)", code, name)
	case code != 200:
		return nil, fmt.Errorf("HTTP %d reading job %s", code, name)
	}
	var j jobStatus
	if err := json.Unmarshal(body, &j); err != nil {
		return nil, fmt.Errorf("job %s: not a Job in the answer: %v", name, err)
	}
	return &j, nil
}

// state: "complete", "failed: REASON: MESSAGE", or what it is waiting for.
func (j *jobStatus) state() (string, bool, bool) {
	for _, c := range j.Status.Conditions {
		if c.Status != "True" {
			continue
		}
		switch c.Type {
		case "Complete":
			return "complete", true, false
		case "Failed":
			return fmt.Sprintf("failed (%s: %s)", c.Reason, c.Message), false, true
		}
	}
	if j.Status.Active > 0 {
		return fmt.Sprintf("running (%d failed attempt(s) so far)", j.Status.Failed), false, false
	}
	return "pending", false, false
}

func jobs(names []string) int {
	if len(names) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	for _, name := range names {
		if name == "" || len(name) > 63 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			fmt.Fprintf(os.Stderr, "probe: jobs: %q is not a Job name (a DNS label)\n", name)
			return 2
		}
	}
	client, err := newAPIClient()
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: jobs: %v\n", err)
		return 2
	}
	last := map[string]string{}
	quietSince := time.Now()
	for {
		waiting := 0
		for _, name := range names {
			j, err := client.job(name)
			var state string
			done, failed := false, false
			switch {
			case err != nil:
				state = "unreadable: " + err.Error()
			case j == nil:
				state = "not created yet"
			default:
				state, done, failed = j.state()
			}
			if failed {
				fmt.Fprintf(os.Stderr, "FAIL job %s %s: its logs: kubectl logs -n %s job/%s\n", name, state, client.namespace, name)
				return 1
			}
			if state != last[name] || time.Since(quietSince) > 30*time.Second {
				fmt.Printf("job %s: %s\n", name, state)
				last[name], quietSince = state, time.Now()
			}
			if !done {
				waiting++
			}
		}
		if waiting == 0 {
			return 0
		}
		time.Sleep(2 * time.Second)
	}
}
