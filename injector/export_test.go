package injector

// For the external tests: the pod cache's uuid index as client.MatchingFields
// and as the informer's indexer name it.
const (
	PodUUIDIndex     = podUUIDIndex
	PodUUIDIndexName = podUUIDIndexName
)
