package spoke

import "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"

// hubSpecDefaults: RestoreHub gives what a section of the annotation lacks
// these, as the apiserver gives them to a v1alpha3 write of the same data.
var hubSpecDefaults = v1alpha3.SpecDefaults
