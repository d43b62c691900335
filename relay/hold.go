package relay

import "time"

// maxClaimInterval bounds how long a group feeder goes without claiming due entries: a hold
// (Nack delay, ModifyAckDeadline) placed through any replica is seen within it.
const maxClaimInterval = 200 * time.Millisecond
