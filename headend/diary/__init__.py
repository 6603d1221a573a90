"""The broadcast diary (sổ nhật ký truyền thanh): its hash chain, reading it, reconciling the
plan with what aired village by village, exports and the monthly 8.3 report."""
