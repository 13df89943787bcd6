// A registry with the OCI 1.1 referrers API, for the tests that read and write referrers through
// it: go-containerregistry's registry package (the one its own clients are tested against) with
// WithReferrersSupport, blobs on disk, manifests in memory. distribution 2.8, the tests' other
// registry, has no referrers API; cosign and oras use the API where a registry answers it.
//
//	referrers-registry -address 127.0.0.1:PORT -disk DIR
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	address := flag.String("address", "127.0.0.1:0", "address to listen on")
	disk := flag.String("disk", "", "directory for blobs")
	flag.Parse()
	if *disk == "" {
		log.Fatal("-disk is required")
	}
	if err := os.MkdirAll(*disk, 0o700); err != nil {
		log.Fatal(err)
	}
	handler := registry.New(
		registry.WithReferrersSupport(true),
		registry.WithBlobHandler(registry.NewDiskBlobHandler(*disk)),
		registry.Logger(log.New(os.Stderr, "", log.LstdFlags)),
	)
	server := &http.Server{Addr: *address, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(server.ListenAndServe())
}
