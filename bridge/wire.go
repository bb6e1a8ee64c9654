package bridge

import (
	"time"
)

// dataList is the {"data": [...]} envelope of list answers.
type dataList[T any] struct {
	Data []T `json:"data"`
}

// CheckinStat is one row of /v3/clusters/checkins and /persistent.
type CheckinStat struct {
	ClusterID   string    `json:"clusterID"`
	FirstSeen   time.Time `json:"firstSeen"`
	LastSeen    time.Time `json:"lastSeen"`
	Checkins    int64     `json:"checkins"`
	ClusterAge  string    `json:"clusterAge"`
	LastCheckin string    `json:"lastCheckin"`
}

// checkinList is the envelope of /v3/clusters/checkins and /persistent.
type checkinList struct {
	Count int           `json:"count"`
	Data  []CheckinStat `json:"data"`
}
