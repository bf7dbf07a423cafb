package Test::Nginx::Socket;

# Test::Nginx::Socket-compatible test harness for the smart-imaging nginx
# module.  See the POD at the end of this file.

use strict;
use warnings;

# "-base" (lower case): inherit from Test::Base and re-export its functions
# without Spiffy's source filter.
use Test::Base -base;

use Digest::MD5 ();
use Digest::SHA ();
use Encode ();
use Errno ();
use HTTP::Response ();
use IO::Select ();
use IO::Socket::INET ();
use JSON::PP ();
use List::Util ();
use Scalar::Util ();
use Time::HiRes ();

use Test::Nginx::Util qw(
    :DEFAULT
    expand_env_in_text parse_time sleep_time find_nginx_binary
    nginx_version setup_server_root write_user_files write_config_file
    start_nginx stop_nginx nginx_alive read_pid error_log_data
    access_log_data reset_error_log_pos cleanup cleanup_test
    unsupported_env_warnings
    $NoNginxManager $CheckAccumErrLog $NoShuffle $ForceRestartOnTest
    $RepeatEach $NoLongString $ServerPort $ServerPortForClient $ServerAddr
    $ServerName $Timeout $NginxBinary $ErrLogFile $Verbose
    @BlockPreprocessors
);

our $VERSION = '0.02';

our @EXPORT = (qw(run_tests add_response_body_check),
               @Test::Nginx::Util::EXPORT);

our @ResponseBodyChecks;

sub add_response_body_check {
    my $code = shift;
    die "add_response_body_check: code reference expected\n"
        unless ref $code eq 'CODE';
    push @ResponseBodyChecks, $code;
}

# Sections of the real harness this one does not implement: a block using
# one bails out rather than passing here and failing there.
my @UnsupportedSections = qw(
    stap stap_out stap_out_like stap_out_unlike tcp_listen tcp_reply
    tcp_query tcp_query_len tcp_no_close tcp_shutdown udp_listen udp_reply
    udp_query shutdown_error_log no_shutdown_error_log http2 http3
    curl_error quic_max_idle_timeout reload_fails skip_nginx2 skip_slave
    skip_openssl todo_nginx
);

# Configuration of the nginx that is running (or was started last).
our $PrevConfig;

our $TotalConnectingTimeouts = 0;

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

sub _fmt_str {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# Perl code from a section ("--- init", "--- skip_eval"), evaluated in
# package Test::Nginx::Util as the real harness does.
sub _eval_in_util {
    my $code = shift;
    ## no critic (ProhibitStringyEval)
    return eval "package Test::Nginx::Util; $code";
}

# Test::Base's "eval" filter returns $@ as the section value when the code
# dies: make that visible instead of comparing against an error message.
sub _warn_eval_errors {
    my $block = shift;
    my $map = eval { $block->_section_map } || {};
    for my $section (sort keys %$map) {
        my $f = $map->{$section}{filters};
        next unless defined $f && $f =~ /\beval\b/;
        my $v = $block->{$section} ? $block->{$section}[0] : undef;
        if (defined $v && !ref $v
            && $v =~ /\bat \(eval \d+\) line \d+\.?\s*\z/)
        {
            Test::More::diag($block->name . " - section '$section': the"
                             . " eval seems to have died: $v");
        }
    }
}

# The value of an expectation section for request $idx.  With several
# requests (an array of requests, pipelined_requests) every expectation
# must be an array; a single request takes element 0 of an array.
sub _indexed {
    my ($name, $value, $idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$idx] if ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected"
                 . " results should be arrays as well.");
    }
    if (ref $value eq 'ARRAY') {
        bail_out("$name - SHOULD NOT HAPPEN: idx != 0 and don't need"
                 . " array.") if $idx != 0;
        return $value->[0];
    }
    return $value;
}

# ---------------------------------------------------------------------------
# Building requests
# ---------------------------------------------------------------------------

# "--- more_headers" text to header lines ("Name: value\r\n" each; "#"
# lines are comments) and whether it asks for a chunked request body.
sub _more_headers {
    my $text = shift;
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $text) {
        next if $line =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $line, 2;
        $key = '' unless defined $key;
        $val = '' unless defined $val;
        $chunked = 1 if lc($key) eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $chunked);
}

# One HTTP/1.x request from its packets (the request line on the first
# line, the body after it): "METHOD URI VERSION" (defaults "/" and
# HTTP/1.1), then Host (server_name()), Connection ($conn), the more_headers
# lines, and Content-Length of the body with its surrounding white space
# trimmed (unless more_headers has a Content-Length or a chunked
# Transfer-Encoding: then the body goes as it is).  Returns the packets of
# the result, split where the given ones were.
sub _build_request {
    my ($name, $more, $chunked, $conn, $packets) = @_;
    my $all = join '', map { defined $_ ? $_ : '' } @$packets;
    my ($first, $content) = $all =~ /\A([^\n]*\n?)(.*)\z/s;
    bail_out("$name - Request line should be non-empty")
        unless length $first;
    my ($method, $uri, $version) = $first =~
        /^\s*(\S+) *(?:(\S+) *)?(?:(\S+) *)?\s*$/
        or bail_out("$name - Request line is not valid. Should be 'meth"
                    . " [url [version]]' but got \"$first\".");
    $uri = '/' unless defined $uri;
    $version = 'HTTP/1.1' unless defined $version;

    my $lead_trim = 0;
    my $len_header = '';
    if (!$chunked && $content ne ''
        && $more !~ /(?:^|\n)Content-Length:/)
    {
        $lead_trim = length($1) if $content =~ s/^(\s+)//;
        $content =~ s/\s+$//;
        $len_header = "Content-Length: " . length($content) . "\r\n";
    }
    $more =~ s/(?<!\r)\n/\r\n/g;
    my $headers = '';
    $headers .= "Host: $ServerName\r\n" unless $more =~ /(?:^|\n)Host:/i;
    $headers .= "Connection: $conn\r\n"
        unless $more =~ /(?:^|\n)Connection/i;
    $headers .= "$more$len_header\r\n";
    my $line = "$method $uri $version\r\n";
    my $head = $line . $headers;
    my $out = $head . $content;
    return [$out] if @$packets <= 1;

    # Packet boundaries: inside the request line they stay there (the
    # headers go with the packet that ends it), in the body they keep
    # their offset.
    my @cuts;
    my $b = 0;
    for my $p (@$packets[0 .. $#$packets - 1]) {
        $b += length(defined $p ? $p : '');
        my $cut;
        if ($b < length $first) {
            $cut = $b < length $line ? $b : length $line;
        } else {
            my $off = $b - length($first) - $lead_trim;
            $off = 0 if $off < 0;
            $off = length $content if $off > length $content;
            $cut = length($head) + $off;
        }
        push @cuts, $cut;
    }
    my @res;
    my $prev = 0;
    for my $cut (@cuts, length $out) {
        $cut = $prev if $cut < $prev;
        push @res, substr($out, $prev, $cut - $prev);
        $prev = $cut;
    }
    return \@res;
}

# The requests of a block: a list of requests, each a list of packets
# { value => bytes, delay_before => seconds (optional) }.
sub _block_requests {
    my $block = shift;
    my $name = $block->name;
    my @list;

    my $raw = $block->raw_request;
    if (defined $raw) {
        if (ref $raw eq 'ARRAY') {
            push @list, [map { ref $_ eq 'HASH' ? {%$_} : { value => $_ } }
                             @$raw];
        } else {
            push @list, [{ value => $raw }];
        }
        return \@list;
    }

    my $request;
    if (defined(my $re = $block->request_eval)) {
        Test::More::diag("$name - request_eval DEPRECATED. Use request"
                         . " eval instead.");
        $request = eval $re;     ## no critic (ProhibitStringyEval)
        warn $@ if $@;
    } else {
        $request = $block->request;
        if (defined $request && !ref $request) {
            1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//s;
        }
    }

    my $more = $block->more_headers || '';
    my $pick_headers = sub {
        my ($i, $what) = @_;
        return _more_headers($more) unless ref $more eq 'ARRAY';
        my $h = $more->[$i];
        bail_out("--- more_headers lacks data for $what") unless defined $h;
        return _more_headers($h);
    };

    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $r = expand_env_in_text($reqs->[$i], $name);
            my ($hdr, $chunked) = $pick_headers->($i,
                                                  "the $i pipelined request");
            $all .= _build_request($name, $hdr, $chunked,
                                   $i == $#$reqs ? 'close' : 'keep-alive',
                                   [$r])->[0];
        }
        push @list, [{ value => $all }];
        return \@list;
    }

    if (!ref $request) {
        my ($hdr, $chunked) = $pick_headers->(0, 'the request');
        push @list, [{ value => _build_request($name, $hdr, $chunked,
                                               'close', [$request])->[0] }];
        return \@list;
    }

    bail_out("$name - invalid ---request : MUST be string or array of"
             . " requests") unless ref $request eq 'ARRAY';

    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my ($hdr, $chunked) = $pick_headers->($i, "the ${i}th request");
        if (!ref $one) {
            push @list, [{ value => _build_request($name, $hdr, $chunked,
                                                   'close', [$one])->[0] }];
        } elsif (ref $one eq 'ARRAY') {
            my @values;
            for my $p (@$one) {
                if (!ref $p) {
                    push @values, $p;
                } elsif (ref $p eq 'HASH') {
                    push @values, $p->{value};
                } else {
                    bail_out("$name - Invalid syntax. $p should be a string"
                             . " or hash with value.");
                }
            }
            my $out = _build_request($name, $hdr, $chunked, 'close',
                                     \@values);
            push @list, [map {
                ref $one->[$_] eq 'HASH'
                    ? { %{ $one->[$_] }, value => $out->[$_] }
                    : { value => $out->[$_] }
            } 0 .. $#$out];
        } else {
            bail_out("$name - Invalid syntax. $one should be a string or an"
                     . " array of packets.");
        }
    }
    return \@list;
}

# ---------------------------------------------------------------------------
# Sending a request
# ---------------------------------------------------------------------------

sub _connect {
    my ($block, $addr) = @_;
    my $name = $block->name;
    for my $try (1 .. 50) {
        my $sock = IO::Socket::INET->new(
            PeerAddr => $addr,
            PeerPort => $ServerPortForClient,
            Proto    => 'tcp',
            Timeout  => $Timeout,
        );
        return $sock if $sock;
        my $err = "$!";
        my $wait = (sleep_time() + sleep_time() * $try) * $try / 2;
        $wait = 1 if $wait > 1;
        if ($try == 50) {
            my $msg = "$name - Can't connect to $addr:$ServerPortForClient:"
                      . " $err (aborted)\n";
            bail_out($msg) if ++$TotalConnectingTimeouts >= 3;
            Test::More::fail($msg);
            return undef;
        }
        warn "$name - Can't connect to $addr:$ServerPortForClient: $err\n"
            . "\tRetry connecting after $wait sec\n" if $wait >= 0.6;
        Time::HiRes::sleep($wait);
    }
    return undef;
}

# Sends one request (its packets, with their delays) over a new connection
# and reads until the server closes it, an error, or $timeout seconds
# without any progress.  Returns ($raw_response, $is_head, $timed_out).
sub _send_request {
    my ($block, $packets, $timeout) = @_;
    my $name = $block->name;
    my @bits = map { {%$_} } @$packets;
    my $is_head = (join '', map { $_->{value} // '' } @bits)
                  =~ /^\s*HEAD\s+/ ? 1 : 0;

    my $addr = $block->server_addr_for_client;
    $addr = $ServerAddr unless defined $addr;
    my $sock = _connect($block, $addr) or return (undef, $is_head, 0);
    binmode $sock;
    $sock->blocking(0);

    my $middle_delay = parse_time($block->raw_request_middle_delay);
    my $resp = '';
    my $cur = shift @bits;
    my ($buf, $off) = ($cur->{value} // '', 0);
    my $writing = 1;
    my $timed_out = 0;
    my $sel = IO::Select->new($sock);

    while (1) {
        my ($r, $w) = IO::Select->select($sel, $writing ? $sel : undef,
                                         undef, $timeout);
        if (!$r && !$w) {
            close $sock;
            $timed_out = 1;
            if (defined $block->abort) {
                Time::HiRes::sleep(0.005);
            } else {
                Test::More::fail("ERROR: client socket timed out -"
                                 . " $name\n");
            }
            last;
        }
        if ($r && @$r) {
            my $done = 0;
            while (1) {
                my $n = sysread $sock, my $chunk, 65536;
                if (!defined $n) {
                    last if $!{EAGAIN} || $!{EWOULDBLOCK};
                    next if $!{EINTR};
                    warn "WARNING: $name - HTTP response read failure: $!";
                    $done = 1;
                    last;
                }
                if ($n == 0) {
                    $done = 1;
                    last;
                }
                $resp .= $chunk;
            }
            if ($done) {
                close $sock;
                last;
            }
        }
        if ($writing && $w && @$w) {
            my $failed = 0;
            while (1) {
                if ($off < length $buf) {
                    my $n = syswrite $sock, $buf, length($buf) - $off, $off;
                    if (!defined $n) {
                        last if $!{EAGAIN} || $!{EWOULDBLOCK};
                        next if $!{EINTR};
                        my $err = "write failed: $!";
                        warn "$err\n";
                        $resp = $err unless length $resp;
                        $failed = 1;
                        last;
                    }
                    $off += $n;
                    next;
                }
                $cur = shift @bits;
                if (!$cur) {
                    $writing = 0;
                    my $shutdown = $block->shutdown;
                    if (defined $shutdown) {
                        $shutdown = 1 if $shutdown =~ /^$/;
                        shutdown $sock, $shutdown;
                    }
                    last;
                }
                ($buf, $off) = ($cur->{value} // '', 0);
                my $delay = defined $cur->{delay_before}
                            ? $cur->{delay_before} : $middle_delay;
                Time::HiRes::sleep($delay) if $delay;
            }
            if ($failed) {
                close $sock;
                last;
            }
        }
    }
    return ($resp, $is_head, $timed_out);
}

# ---------------------------------------------------------------------------
# Parsing a response
# ---------------------------------------------------------------------------

# Returns ($res (an HTTP::Response, undef when the chunked body is
# broken), $raw_headers (status line and header lines, each with its CRLF),
# $left (bytes after the body: the next pipelined response), $short (the
# body is shorter than its Content-Length)).
sub _parse_response {
    my ($name, $raw, $is_head) = @_;
    my $raw_headers = $raw =~ /(.*?\r\n)\r\n/s ? $1 : '';
    my $res = HTTP::Response->parse($raw);
    my $code = $res->code;
    if (defined $code && $code !~ /^\d+$/) {
        $res->code(undef);
        $code = undef;
    }
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);

    my $enc = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my @trailers = $res->header('Trailer');
    my ($left, $short);

    if (defined $enc && $enc eq 'chunked') {
        my $data = $res->content;
        $data = '' unless defined $data;
        my $body = '';
        while (1) {
            if (!@trailers && $data =~ /\G0[ \t]*\r\n\r\n/gc) {
                $left = $1 if $data =~ /\G(.+)/gcs;
                last;
            }
            if (@trailers && $data =~ /\G0[ \t]*\r\n/gc) {
                for my $t (@trailers) {
                    next if $data =~ /\G\Q$t\E: [^\n]*\r\n/gc;
                    Test::More::fail("$name - invalid trailer data received"
                                     . " (expected $t).");
                    return (undef, $raw_headers);
                }
                if ($data !~ /\G\r\n/gc) {
                    Test::More::fail("$name - invalid chunked data received"
                                     . " (expected CRLF).");
                    return (undef, $raw_headers);
                }
                $left = $1 if $data =~ /\G(.+)/gcs;
                last;
            }
            if ($data =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                my $at = pos $data;
                if ($at + $size > length $data) {
                    Test::More::fail("$name - invalid chunked data received"
                        . " (not enought octets for the data section)");
                    return (undef, $raw_headers);
                }
                $body .= substr $data, $at, $size;
                pos($data) = $at + $size;
                if ($data !~ /\G\r\n/gc) {
                    Test::More::fail("$name - invalid chunked data received"
                                     . " (expected CRLF).");
                    return (undef, $raw_headers);
                }
            } elsif ($data =~ /\G(.+)/gcs) {
                Test::More::fail("$name - invalid chunked body received: $1");
                return (undef, $raw_headers);
            } else {
                Test::More::fail("$name - no last chunk found - $data");
                return (undef, $raw_headers);
            }
        }
        $res->content($body);
    } elsif (defined $len && $len ne '' && $len =~ /^\d+$/) {
        my $data = $res->content;
        $data = '' unless defined $data;
        if (length $data < $len) {
            if (!$is_head) {
                warn "WARNING: $name - response body truncated: $len"
                     . " expected, but got " . length($data) . "\n";
                $short = 1;
            }
        } elsif (length $data > $len) {
            $left = substr $data, $len;
            $res->content(substr $data, 0, $len);
        }
    }
    return ($res, $raw_headers, $left, $short);
}

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

sub _check_error_code {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $code = ($res && $res->code) || '';
    if (defined(my $like = $block->error_code_like)) {
        my $val = _indexed($name, $like, $idx, $need_array);
        Test::More::like($code, qr/$val/sm, "$name - status code ok");
    } elsif (defined(my $want = $block->error_code)) {
        Test::More::is($code, _indexed($name, $want, $idx, $need_array),
                       "$name - status code ok");
    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }
}

sub _check_raw_response_headers {
    my ($block, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    if (defined(my $v = $block->raw_response_headers_like)) {
        my $pat = _indexed($name, $v, $idx, $need_array);
        Test::More::like($raw_headers, qr/$pat/s,
                         "$name - raw resp headers like");
    }
    if (defined(my $v = $block->raw_response_headers_unlike)) {
        my $pat = _indexed($name, $v, $idx, $need_array);
        Test::More::unlike($raw_headers, qr/$pat/s,
                           "$name - raw resp headers unlike");
    }
}

# "Name: value" lines to { name => value }; "!Name" (and a line without a
# colon) gives undef.  A name given twice keeps its last value.
sub _parse_header_lines {
    my $text = shift;
    my %h;
    return \%h unless defined $text;
    for my $line (split /^/m, $text) {
        $line =~ s/^\s+|\s+$//g;
        if ($line =~ s/^!\s*//) {
            $h{$line} = undef;
        } else {
            my ($key, $val) = split /\s*:\s*/, $line, 2;
            $h{defined $key ? $key : ''} = $val;
        }
    }
    return \%h;
}

sub _check_response_headers {
    my ($block, $res, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    if (defined(my $v = $block->response_headers)) {
        my $h = _parse_header_lines(_indexed($name, $v, $idx, $need_array));
        for my $key (sort keys %$h) {
            my $val = $h->{$key};
            if (!defined $val) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                    "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            my $got = $res ? $res->header($key) : undef;
            Test::More::is(defined $got ? $got : '', $val,
                           "$name - header $key ok");
        }
    } elsif (defined($v = $block->response_headers_like)) {
        my $h = _parse_header_lines(_indexed($name, $v, $idx, $need_array));
        for my $key (sort keys %$h) {
            my $pat = defined $h->{$key} ? $h->{$key} : '';
            my $got = $res ? $res->header($key) : undef;
            Test::More::like(defined $got ? $got : '', qr/^$pat$/,
                             "$name - header $key like ok");
        }
    }
}

my %BodyFilters = (
    md5_hex  => \&Digest::MD5::md5_hex,
    sha1_hex => \&Digest::SHA::sha1_hex,
    uc       => sub { uc $_[0] },
    lc       => sub { lc $_[0] },
    ucfirst  => sub { ucfirst $_[0] },
    lcfirst  => sub { lcfirst $_[0] },
    length   => sub { length $_[0] },
);

sub _run_filter {
    my ($name, $f, $content) = @_;
    return $f->($content) if ref $f eq 'CODE';
    bail_out("$name - the --- response_body_filters section only supports"
             . " subroutine reference values and string values") if ref $f;
    my $code = $BodyFilters{$f}
        or bail_out("$name - unknown filter, \"$f\", specified in the ---"
                    . " response_body_filters section");
    return $code->($content);
}

sub _transform_response_body {
    my ($block, $res, $idx) = @_;
    return unless $res;
    my $content = $res->content;
    return unless defined $content;
    my $filters = $block->response_body_filters;
    return unless defined $filters;
    my $name = $block->name;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//g;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    if (ref $filters->[0] eq 'ARRAY') {
        for my $e (@$filters) {
            bail_out("$name - the --- response_body_filters two-dimensional"
                     . " array only be like [[uc], [lc]] not [[uc], lc]")
                unless ref $e eq 'ARRAY';
        }
        $filters = $filters->[$idx];
        bail_out("$name - the ---response_body_filters two-dimensional"
                 . " array unmatch the specified request($idx)")
            unless defined $filters;
    }
    my @list = ref $filters eq 'ARRAY' ? @$filters : ($filters);
    $content = _run_filter($name, $_, $content) for @list;
    $res->content($content);
}

sub _check_response_body {
    my ($block, $res, $idx, $rep, $need_array) = @_;
    my $name = $block->name;

    if (defined(my $file = $block->write_resp_body_file)) {
        if ($res) {
            open my $out, '>:raw', $file
                or bail_out("$name - failed to write to file '$file': $!");
            print $out $res->content // '';
            close $out;
        }
    }

    my $content = $res ? $res->content : undef;
    if (defined $content) {
        $content =~ s/^TE: deflate,gzip;q=0\.3\r\n//gm;
        $content =~ s/^Connection: TE, close\r\n//gm;
    }

    if (defined $block->response_body
        || defined $block->response_body_eval)
    {
        if (defined $block->response_body_json_sort) {
            my $js = JSON::PP->new->canonical(1);
            my $obj = eval { $js->loose(1)->decode($content) };
            $content = $js->encode($obj) . "\n" if !$@;
        }
        my $expected;
        if ($block->response_body_eval) {
            Test::More::diag("$name - response_body_eval is DEPRECATED. Use"
                             . " response_body eval instead.");
            $expected = eval _indexed($name, scalar $block->response_body_eval,
                                      $idx, $need_array);
            warn $@ if $@;
        } else {
            $expected = _indexed($name, scalar $block->response_body, $idx,
                                 $need_array);
        }
        if (my $charset = $block->charset) {
            Encode::from_to($expected, 'UTF-8', $charset);
        }
        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $expected = expand_env_in_text($expected, $name);
        }
        my $msg = "$name - response_body - response is expected (repeated"
                  . " req $rep, req $idx)";
        if (ref $expected) {
            Test::More::like($content, $expected, $msg);
        } else {
            is_str($content, $expected, $msg);
        }
    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my $like = defined $block->response_body_like;
        my $pat = _indexed($name, scalar($like ? $block->response_body_like
                                               : $block->response_body_unlike),
                           $idx, $need_array);
        $pat = '' unless defined $pat;
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $type = $like ? 'like' : 'unlike';
        my $msg = "$name - response_body_$type - response is expected";
        if ($like) {
            Test::More::like($content, qr/$pat/s, $msg);
        } else {
            Test::More::unlike($content, qr/$pat/s, $msg);
        }
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $res ? $res->content : undef, $idx, $rep, undef);
    }
}

# Patterns of a log section: lines of the text form, a qr//, or an array.
sub _log_patterns {
    my $pats = shift;
    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub _line_matches {
    my ($line, $pat) = @_;
    return (ref $pat && $line =~ /$pat/) || $line =~ /\Q$pat\E/;
}

sub _value_contains {
    my ($val, $str) = @_;
    return $val =~ /\Q$str\E/ if !ref $val || ref $val eq 'Regexp';
    if (ref $val eq 'ARRAY') {
        for my $v (@$val) {
            return 1 if _value_contains($v, $str);
        }
    }
    return 0;
}

# One test per pattern that must match a line of $lines, one per pattern
# that must not (one failure per matching line).
sub _check_log_patterns {
    my ($name, $what, $lines, $want, $dont, $rep) = @_;
    if (defined $want) {
        my $pats = _log_patterns($want);
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next unless defined $pat;
                if (_line_matches($line, $pat)) {
                    Test::More::pass("$name - pattern \"$pat\" matches a line"
                                     . " in $what (req $rep)");
                    undef $pat;
                }
            }
        }
        for my $pat (grep { defined } @$pats) {
            Test::More::fail("$name - pattern \"$pat\" should match a line"
                             . " in $what (req $rep)");
        }
    }
    if (defined $dont) {
        my $pats = _log_patterns($dont);
        my %found;
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next unless defined $pat;
                next unless _line_matches($line, $pat);
                $found{$pat} = 1;
                Test::More::fail("$name - pattern \"" . _fmt_str($pat)
                    . "\" should not match any line in $what but matches"
                    . " line \"" . _fmt_str($line) . "\" (req $rep)");
            }
        }
        for my $pat (@$pats) {
            next if !defined $pat || $found{$pat};
            Test::More::pass("$name - pattern \"" . _fmt_str($pat)
                             . "\" does not match a line in $what (req $rep)");
        }
    }
}

sub _check_error_log {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my $lines;

    my $grep = $block->grep_error_log;
    if (defined $grep) {
        my $pat = ref $grep eq 'ARRAY' ? $grep->[$rep] : $grep;
        if (defined $pat) {
            my $want = $block->grep_error_log_out;
            bail_out("$name - No --- grep_error_log_out defined but ---"
                     . " grep_error_log is defined") unless defined $want;
            $want = expand_env_in_text($want, $name);
            $want = $want->[$rep] if ref $want eq 'ARRAY';
            $lines ||= error_log_data() || [];
            my $got = '';
            for my $line (@$lines) {
                if ((ref $pat && $line =~ /$pat/) || $line =~ /\Q$pat\E/) {
                    my $m = $&;
                    $got .= "$m\n" if $m !~ /\n/;
                }
            }
            my $msg = "$name - grep_error_log_out (req $rep)";
            if (ref $want eq 'Regexp') {
                Test::More::like($got, $want, $msg);
            } else {
                is_str($got, $want, $msg);
            }
        }
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but ---"
                 . " grep_error_log_out is defined");
    }

    my %report = ('[alert]' => 1, '[crit]' => 1, '[emerg]' => 1,
                  'writing a global lua variable' => 1);
    for my $sec (grep { defined } scalar $block->error_log,
                                  scalar $block->no_error_log)
    {
        for my $what (keys %report) {
            (my $prefix = $what) =~ s/\]$//;
            delete $report{$what} if _value_contains($sec, $prefix);
        }
    }

    my $want = $block->error_log;
    my $dont = $block->no_error_log;
    if (defined $want || defined $dont || %report) {
        $lines ||= error_log_data() || [];
        _check_log_patterns($name, 'error.log', $lines, $want, $dont, $rep);
    }
    for my $what (sort keys %report) {
        for my $line (@$lines) {
            warn "WARNING: $name - " . _fmt_str($line) . "\n"
                if index($line, $what) >= 0;
        }
    }
    for my $line (@{ $lines || [] }) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            chomp(my $l = $line);
            Test::More::fail("$name - $l\n");
        }
    }
}

sub _check_access_log {
    my ($block, $rep) = @_;
    my $want = $block->access_log;
    my $dont = $block->no_access_log;
    return unless defined $want || defined $dont;
    _check_log_patterns($block->name, 'access.log', access_log_data(),
                        $want, $dont, $rep);
}

# ---------------------------------------------------------------------------
# Running blocks
# ---------------------------------------------------------------------------

sub _sleep_wait {
    my $block = shift;
    my $wait = $block->wait;
    Time::HiRes::sleep(parse_time($wait)) if $wait;
}

# The requests of a block, once (repetition $rep): every response checked,
# the logs checked after each response (each check sees what was logged
# since the previous one).
sub _run_requests {
    my ($block, $rep) = @_;
    my $name = $block->name;

    my $reqs = _block_requests($block);
    bail_out("$name - request empty") unless @$reqs;

    my $timeout = parse_time($block->timeout);
    $timeout = $Timeout unless defined $timeout;

    my $pipelined = $block->pipelined_requests;
    my $need_array = $pipelined ? 1 : @$reqs > 1;
    my $ignore = defined $block->ignore_response;
    my $idx = 0;

    for my $r (0 .. $#$reqs) {
        my ($raw, $is_head, $timed_out) = _send_request($block, $reqs->[$r],
                                                        $timeout);
        my $pending = $pipelined ? scalar @$pipelined : 0;
        while (1) {
            $raw = '' unless defined $raw;
            my ($res, $raw_headers, $left, $short);
            if (!$ignore) {
                if (defined $block->http09) {
                    $res = HTTP::Response->new(200, 'OK', [], $raw);
                    $raw_headers = '';
                } else {
                    ($res, $raw_headers, $left, $short) =
                        _parse_response($name, $raw, $is_head);
                }
                # Stricter than the real harness (which only warns): a body
                # that does not match its framing is a failure, unless the
                # client gave up first (timeout).
                if (!$timed_out && length $raw) {
                    Test::More::fail("$name - malformed response: body"
                                     . " shorter than its Content-Length")
                        if $short;
                    Test::More::fail("$name - malformed response: "
                                     . length($left) . " bytes after the"
                                     . " body")
                        if !$pending && defined $left && length $left;
                }
            }
            if ($pending) {
                $raw = $left;
                $pending--;
            }
            if (!$ignore) {
                _check_error_code($block, $res, $idx, $need_array);
                _check_raw_response_headers($block, $raw_headers, $idx,
                                            $need_array);
                _check_response_headers($block, $res, $raw_headers, $idx,
                                        $need_array);
                _transform_response_body($block, $res, $idx);
                _check_response_body($block, $res, $idx, $rep, $need_array);
            }
            if (!$NoNginxManager && !nginx_alive()) {
                Test::More::diag("$name - nginx is no longer running"
                                 . " (crashed?)");
            }
            if ($pending || $r < $#$reqs) {
                _sleep_wait($block);
                _check_error_log($block, $rep);
                _check_access_log($block, $rep) unless $ignore;
            }
            $idx++;
            last unless $pending;
        }
    }

    _sleep_wait($block);
    _check_error_log($block, $rep);
    _check_access_log($block, $rep) unless $ignore;
}

sub _version_cmp_ok {
    my ($op, $a, $b, $c) = @_;
    my $want = $a * 1000000 + $b * 1000 + $c;
    my $have = nginx_version();
    return $op eq '<'  ? $have <  $want
         : $op eq '<=' ? $have <= $want
         : $op eq '>'  ? $have >  $want
         :               $have >= $want;
}

sub run_test {
    my $block = shift;
    return if defined $block->SKIP;
    my $name = $block->name;

    for my $s (@UnsupportedSections) {
        bail_out("$name - --- $s is not supported by this harness (t/lib);"
                 . " run the file under the real Test::Nginx")
            if exists $block->{$s};
    }

    %Test::Nginx::Util::RandPorts = ();
    my $config = $block->config;
    $config = expand_env_in_text($config, $name);

    my $should_restart;
    if (!defined $config) {
        bail_out("$name - No '--- config' section specified and could not"
                 . " get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?")
            if !$NoNginxManager && !defined $PrevConfig;
        # The nginx of an earlier block goes on serving.
        $should_restart = 0;
    } elsif ($NoNginxManager) {
        Test::More::diag("NO_NGINX_MANAGER activated: config for $name"
                         . " ignored");
        $should_restart = 0;
    } else {
        $should_restart = !defined $PrevConfig || $config ne $PrevConfig
                          || $ForceRestartOnTest;
    }

    my ($to_skip, $should_skip, $skip_reason);
    if (defined(my $se = $block->skip_eval)) {
        if ($se =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            ($to_skip, $skip_reason) = ($1, 'skip_eval');
            my $code = $2;
            $should_skip = _eval_in_util($code);
            bail_out("$name - skip_eval - failed to eval the Perl code"
                     . " \"$code\": $@") if $@;
        }
    }
    if (defined(my $sn = $block->skip_nginx)) {
        $sn =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                (?:\s*:\s*(.*))?\s*$/x
            or bail_out("$name - Invalid --- skip_nginx spec: $sn");
        $to_skip = $1;
        $skip_reason = $6 || "nginx version $2 $3.$4.$5";
        $should_skip = 1 if _version_cmp_ok($2, $3, $4, $5);
    }
    $skip_reason = 'various reasons' unless defined $skip_reason;

    my ($should_todo, $todo_reason);
    if (defined(my $todo = $block->todo)) {
        $todo =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- todo spec: $todo");
        ($should_todo, $to_skip, $todo_reason) = (1, $1, $2);
    }

    if (!$NoNginxManager && !$should_skip && $should_restart) {
        $PrevConfig = $config;
        stop_nginx();
        setup_server_root();
        if (my $code = $block->post_setup_server_root) {
            _eval_in_util($code);
            bail_out("$name - post_setup_server_root failed: $@") if $@;
        }
        write_user_files($block);
        write_config_file($block, $config);
        bail_out("$name - Cannot find the nginx executable in the PATH"
                 . " environment") unless find_nginx_binary();
        reset_error_log_pos();

        my $must_die = $block->must_die;
        if (defined $must_die) {
            for my $i (0 .. $RepeatEach - 1) {
                my $status = Test::Nginx::Util::run_nginx();
                my $code = $status >> 8;
                if ($status == -1) {
                    Test::More::fail("$name - failed to execute the nginx"
                                     . " command line");
                } elsif ($status & 128) {
                    Test::More::fail("$name - nginx core dumped");
                } elsif (Scalar::Util::looks_like_number($must_die)) {
                    Test::More::is($must_die, $code,
                                   "$name - die with the expected exit"
                                   . " code");
                } else {
                    Test::More::isnt($status, 0, "$name - die as expected");
                }
                _check_error_log($block, $i);
                if ($status == 0) {
                    warn "WARNING: $name - nginx must die but it does not;"
                         . " killing it (req $i)\n";
                    for (1 .. 15) {
                        last if defined read_pid();
                        Time::HiRes::sleep(sleep_time());
                    }
                    stop_nginx();
                }
            }
            return;
        }

        my $status = start_nginx();
        my $deadline = Time::HiRes::time() + 30;
        while ($status != 0) {
            my $log = Test::Nginx::Util::slurp_file($ErrLogFile) // '';
            bail_out("$name - Cannot start nginx using command \""
                     . join(' ', Test::Nginx::Util::nginx_command())
                     . "\" (status code $status): "
                     . $Test::Nginx::Util::StartStderr)
                if $log !~ /Address already in use/
                   || Time::HiRes::time() > $deadline;
            Time::HiRes::sleep(0.5);
            $status = start_nginx();
        }
    }

    if (my $init = $block->init) {
        _eval_in_util($init);
        bail_out("$name - init failed: $@") if $@;
    }

    reset_error_log_pos();
    for my $i (1 .. $RepeatEach) {
        write_user_files($block) if $i > 1;
        if ($should_skip && defined $to_skip) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $to_skip);
            }
        } elsif ($should_todo) {
            TODO: {
                Test::More::todo_skip("$name - $todo_reason", $to_skip);
            }
        } else {
            _run_requests($block, $i - 1);
        }
    }
}

sub run_tests {
    my $V = `\Q$NginxBinary\E -V 2>&1`;
    bail_out("Failed to get the version of the Nginx in PATH: "
             . ($V // '')) if !defined $V || $? != 0;
    unsupported_env_warnings();

    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort
        unless defined $ENV{TEST_NGINX_SERVER_PORT};

    my @blocks = blocks();
    @blocks = List::Util::shuffle(@blocks) unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        _warn_eval_errors($block);
        $block->set_value('name', "$0 " . $block->name);
        run_test($block);
        cleanup_test($block);
    }
    cleanup();
}

1;

__END__

=head1 NAME

Test::Nginx::Socket - Test::Nginx::Socket-compatible test harness
(smart-imaging)

=head1 SYNOPSIS

    use Test::Nginx::Socket 'no_plan';

    repeat_each(2);
    run_tests();

    __DATA__

    === TEST 1: hello
    --- config
        location = /t {
            return 200 "hello\n";
        }
    --- request
    GET /t
    --- response_body
    hello
    --- no_error_log
    [error]

Run it with

    TEST_NGINX_BINARY=/path/to/nginx \
    TEST_NGINX_LOAD_MODULES=/path/to/module.so \
        prove -I t/lib -r t/

=head1 DESCRIPTION

CPAN's L<Test::Nginx> (openresty/test-nginx) is not packaged for Debian,
so this project ships a small, independent implementation of the part of
its C<Test::Nginx::Socket> interface that the project's F<t/*.t> files use,
built on L<Test::Base> (Debian: C<libtest-base-perl>) and L<HTTP::Response>
(C<libhttp-message-perl>).

It behaves like the real harness (Test::Nginx 0.33, commit cf245a0)
wherever a test file could tell the difference: the same generated
nginx.conf (default C<location /> included), the same requests, the same
checks with the same number of tests, the same regex semantics, blocks
shuffled unless C<no_shuffle()>, and a block without C<--- config> served
by the nginx of the block before.  A file that passes here passes there;
F<t/run-real-test-nginx.sh> runs the suite under the real one.

For each block:

=over

=item 1.

The block preprocessors run (the last one added first), the block's name
becomes C<"$0 TEST n: ...">.

=item 2.

With a C<--- config> (after C<$TEST_NGINX_*> expansion): the nginx of the
previous block is stopped (QUIT), the server root is recreated (C<conf/>,
C<logs/>, C<html/> with an C<index.html> saying "It works!"), the
C<user_files> are written, nginx.conf is written and
C<nginx -e logs/error.log -p SERVROOT/ -c conf/nginx.conf> is started
(C<daemon on>).  Without one, the running nginx serves the block (the
first block of a file must have one).

=item 3.

C<repeat_each()> times: the requests are sent, each over a new connection
(all of them over one for C<pipelined_requests>), each response is checked,
and the logs are checked after each response: each check reads what
F<error.log> got since the previous check (after a 45 ms pause; from the
start of the file at the first check, i.e. with nginx's startup lines).

=back

=head2 Generated nginx.conf

    worker_processes  1;                  # workers()
    daemon on;
    master_process off;                   # master_on()
    error_log .../logs/error.log debug;   # log_level() / --- log_level
    pid       .../logs/nginx.pid;
    env MOCKEAGAIN_VERBOSE; ...           # + env_to_nginx()
    load_module /abs/path.so; <main_config>
    http {
        access_log .../logs/access.log; client_body_temp_path ...; ...
        default_type text/plain;
        keepalive_timeout  68000ms;
        <http_config>
        server {
            listen          1984;         # TEST_NGINX_SERVER_PORT
            server_name     'localhost';  # server_name() / --- server_name
            client_max_body_size 30M;
            <config_preamble()>
            <config>
            location / {                  # unless no_root_location()
                root .../html;
                index index.html index.htm;
            }
        }
    }
    <post_main_config>
    events { accept_mutex off; worker_connections 64; }
    env ASAN_OPTIONS; ...
    user root;                            # only when running as root

A C<--- config> with a C<location /> of its own therefore needs
C<no_root_location()> (nginx: C<duplicate location "/">).

=head2 Functions

C<run_tests>, C<repeat_each>, C<workers>, C<worker_connections>,
C<master_on>, C<master_off>, C<master_process_enabled>, C<log_level>,
C<no_long_string>, C<no_shuffle>, C<no_root_location>, C<config_preamble>,
C<server_name>, C<server_addr>, C<server_port>, C<server_port_for_client>,
C<server_root>, C<html_dir>, C<timeout>, C<env_to_nginx>,
C<check_accum_error_log>, C<no_nginx_manager>, C<use_hup> (only turns the
master process on), C<add_block_preprocessor>, C<add_response_body_check>,
C<add_cleanup_handler>, C<add_test_cleanup_handler>, C<is_str>,
C<bail_out>, plus L<Test::Base>'s (C<plan>, C<blocks>, C<is>, ...).  No
variables are exported.  A file must plan: C<use Test::Nginx::Socket
'no_plan';>, C<plan 'no_plan';> or C<plan tests =E<gt> ...>.

=head2 Sections

=over

=item main_config, http_config, config, post_main_config, server_name,
log_level, error_log_file, user_files, post_setup_server_root

C<$TEST_NGINX_FOO> (only that form) is replaced by C<$ENV{TEST_NGINX_FOO}>
in the config sections, in every C<user_files> content, in
C<pipelined_requests> and in a text C<response_body>; an undefined one bails
out.  C<TEST_NGINX_SERVER_ROOT> and C<TEST_NGINX_SERVER_PORT> are set by
the harness, C<TEST_NGINX_HTML_DIR> is B<not> (set it in the file:
C<$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();>); C<$TEST_NGINX_RAND_PORT_N>
is a free port.  C<user_files>: C<< >>> name [touch -t date] >> lines, or
with C<eval> C<[[name, content, date?], ...]> (binary-safe; relative names
under the html dir).

=item request, more_headers, pipelined_requests, raw_request

C<request>: leading blank and C<#> lines are dropped; C<METHOD [URI
[VERSION]]> (defaults C</> and C<HTTP/1.1>) and the body on the following
lines (trimmed, with a C<Content-Length>, unless C<more_headers> gives
C<Content-Length> or C<Transfer-Encoding: chunked>).  Headers: C<Host:
localhost> (C<server_name()>) and C<Connection: close> unless
C<more_headers> has them, then the C<more_headers> lines as given.  With
C<eval>, an array of requests (each its own connection; a request may be an
array of packets, strings or C<< { value =E<gt> ..., delay_before =E<gt>
secs } >>).  C<more_headers> may be an array (one per request).
C<pipelined_requests>: an array of requests sent at once over one
connection (C<Connection: keep-alive> but the last).  C<raw_request>: sent
as it is (a string or an array of packets; C<raw_request_middle_delay>
between packets).  Also C<timeout> (C<1.5>, C<2s>, C<50ms>; default 3 s),
C<abort> (a timeout is no failure), C<shutdown>, C<server_addr_for_client>.

=item Expectations

With several requests (an array, or C<pipelined_requests>) every
expectation section must be an array (else the run bails out); with one
request an array's element 0 is used.  Per response, one test for each of:
the status (C<error_code_like> as C<qr/$v/sm>, else C<error_code>, else
200); C<raw_response_headers_like> / C<_unlike> (C<qr/$v/s> on the status
line and header lines); C<response_headers> (one test per header name:
C<Name: value> exact, after C<$ServerPort> replacement; C<!Name>: no line
starting with C<Name:> in the raw headers, case-sensitive) B<or, only when
there is no response_headers section,> C<response_headers_like> (one test
per name: C<qr/^$value$/>, anchored; C<!Name>: absent or empty); and
C<response_body> (exact, or C<like> for a C<qr//>) B<or>
C<response_body_like> (C<qr/$v/s>; a text section keeps its trailing
newline) B<or> C<response_body_unlike>.  C<response_body_filters> (names or
code refs; a two-dimensional array gives one list per request) transform
the body first; C<add_response_body_check> subs get the transformed body.
Also C<response_body_eval>, C<response_body_json_sort>, C<charset>,
C<write_resp_body_file>, C<ignore_response>, C<http09>.

=item error_log, no_error_log, grep_error_log, grep_error_log_out,
access_log, no_access_log, wait

Checked after every response (see above).  Lines of the text form are
substrings; with C<eval>, a C<qr//> or an array of strings and C<qr//>s.
One test per C<error_log> pattern (pass at the first matching line); one
per C<no_error_log> pattern that matches no line, and one failure per line
that matches.  Lines with C<[alert]>, C<[crit]> or C<[emerg]> no pattern
mentions are warned about; an C<Assertion ... failed> line is a failure.
C<wait> sleeps before the checks.

=item must_die, init, skip_eval, skip_nginx, todo, ONLY, SKIP, LAST

C<must_die>: nginx must fail to start, C<repeat_each()> times: one test
(the exit code when the value is a number), then the log checks; no
request is sent.  C<init>, C<skip_eval> code runs in package
C<Test::Nginx::Util>; C<skip_eval: N: expr> skips N tests per repetition.

=back

=head2 Environment

C<TEST_NGINX_BINARY> (default C<nginx> from C<PATH>),
C<TEST_NGINX_LOAD_MODULES> (space separated C<.so> paths; relative ones are
taken relative to the current directory, where the real harness needs
absolute ones), C<TEST_NGINX_SERVER_PORT> / C<TEST_NGINX_PORT> (1984),
C<TEST_NGINX_CLIENT_PORT>, C<TEST_NGINX_SERVROOT> (F<t/servroot>),
C<TEST_NGINX_TIMEOUT> (3), C<TEST_NGINX_SLEEP> (0.015),
C<TEST_NGINX_LOG_LEVEL>, C<TEST_NGINX_MASTER_PROCESS>,
C<TEST_NGINX_NO_SHUFFLE>, C<TEST_NGINX_CHECK_ACCUM_ERR_LOG>,
C<TEST_NGINX_FORCE_RESTART_ON_TEST>, C<TEST_NGINX_WORKER_USER>,
C<TEST_NGINX_EVENT_TYPE>, C<TEST_NGINX_FAST_SHUTDOWN>,
C<TEST_NGINX_NO_CLEAN> (leave the last nginx running),
C<TEST_NGINX_NO_NGINX_MANAGER>, C<TEST_NGINX_VERBOSE>.

=head1 DIFFERENCES FROM THE REAL HARNESS

Not supported (a block using one of these sections bails out; the
environment variables are ignored with a note): HUP reload, valgrind,
stap, check-leak and benchmark modes, HTTP/2 and HTTP/3, the embedded
TCP/UDP servers, C<shutdown_error_log>, C<skip_nginx2>, C<skip_slave>,
C<skip_openssl>, C<todo_nginx>, C<curl>, C<TEST_NGINX_RANDOMIZE>.

Stricter here: a response body shorter than its C<Content-Length>, or
bytes after the body of the last response, are a test failure (the real
harness only warns).  Test names differ.

=cut
