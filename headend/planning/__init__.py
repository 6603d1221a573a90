"""What the loudspeakers should play: schedule files and templates, the calendar's edits,
expansion into per-node plans, the planned programme, publishing signed plans, criterion 8.3."""
