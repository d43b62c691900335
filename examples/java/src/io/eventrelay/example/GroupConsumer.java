package io.eventrelay.example;

import com.google.protobuf.Duration;
import io.eventrelay.v1.AcknowledgeRequest;
import io.eventrelay.v1.AcknowledgeResponse;
import io.eventrelay.v1.Delivery;
import io.eventrelay.v1.Event;
import io.eventrelay.v1.EventServiceGrpc;
import io.eventrelay.v1.StartPosition;
import io.eventrelay.v1.SubscribeRequest;
import io.eventrelay.v1.SubscribeResponse;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * A durable consumer of an eventrelay consumer group.
 *
 * <p>It subscribes to {@code EventService.Subscribe} with a {@code group} and a {@code consumer}
 * name, processes each {@link Delivery} and then acknowledges it with {@code Acknowledge(ack_id)}.
 * The relay tracks the group's position: a consumer that restarts (or reconnects after a stream
 * error) first gets back its own deliveries that were never acknowledged, then new events. A
 * delivery not acknowledged within the ack deadline is redelivered (to this or another member of
 * the group) with a higher {@code delivery_attempt}; after {@code max_delivery_attempts} it moves
 * to the source's dead letters. Delivery is therefore at-least-once: processing must be idempotent
 * (key it on {@code event.source + event.id}).
 *
 * <pre>
 * Usage: GroupConsumer [options] GROUP CONSUMER [SOURCE...]
 *
 *   GROUP                 consumer group name (durable position and acknowledgements)
 *   CONSUMER              this member's name within the group (stable across restarts)
 *   SOURCE...             sources to read; none: every source the token may read
 *
 *   --addr HOST:PORT      relay gRPC address (default: $RELAY_GRPC_ADDR or localhost:9090)
 *   --ack-deadline SECS   redeliver a delivery not acknowledged within this time (default 30)
 *   --max N               exit 0 after processing N events (default: run forever)
 *   --timeout SECS        exit 1 if --max was not reached within this time
 *   --no-ack              process without acknowledging (shows redelivery)
 *
 *   RELAY_TOKEN           optional bearer token, sent as "authorization: Bearer ..." metadata
 * </pre>
 *
 * <p>Each processed event is printed on stdout as one line:
 * {@code event <source> <id> <type> attempt=<n> data=<payload as UTF-8>} (line breaks inside the
 * payload are written as \n and \r so that one event stays one line). Diagnostics go to stderr.
 *
 * <p>The connection is plaintext, as for a relay inside a private network; for TLS replace
 * {@code usePlaintext()} with {@code useTransportSecurity()} (the default) in {@link #main}.
 */
public final class GroupConsumer {

  /** Exit codes. */
  private static final int EXIT_OK = 0;
  private static final int EXIT_TIMEOUT = 1;
  private static final int EXIT_ERROR = 2;

  /** Reconnect backoff: doubles from INITIAL up to MAX; each wait is random in [step/2, step]. */
  private static final long BACKOFF_INITIAL_MILLIS = 250;
  private static final long BACKOFF_MAX_MILLIS = 30_000;

  /** Deadline of each Acknowledge call. */
  private static final long ACK_TIMEOUT_SECONDS = 10;

  /** stdout as UTF-8 whatever the platform locale, flushed at every line. */
  private static final PrintStream OUT =
      new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);

  private final EventServiceGrpc.EventServiceBlockingStub stub;
  private final Options opts;
  /** Overall deadline from --timeout, or null to run until --max or forever. */
  private final Deadline deadline;
  private long processed;
  /** Whether the current stream received anything (it connected and works). */
  private boolean streamReceived;

  GroupConsumer(EventServiceGrpc.EventServiceBlockingStub stub, Options opts) {
    this.stub = stub;
    this.opts = opts;
    this.deadline =
        opts.timeoutSeconds > 0 ? Deadline.after(opts.timeoutSeconds, TimeUnit.SECONDS) : null;
  }

  public static void main(String[] args) throws InterruptedException {
    Options opts;
    try {
      opts = Options.parse(args);
    } catch (IllegalArgumentException e) {
      System.err.println("GroupConsumer: " + e.getMessage());
      System.err.println(Options.USAGE);
      System.exit(EXIT_ERROR);
      return;
    }
    if (opts.help) {
      OUT.println(Options.USAGE);
      return;
    }

    // One channel for the life of the process: it reconnects by itself, and Subscribe and
    // Acknowledge share its HTTP/2 connection.
    ManagedChannel channel = ManagedChannelBuilder.forTarget(opts.addr).usePlaintext().build();
    EventServiceGrpc.EventServiceBlockingStub stub = EventServiceGrpc.newBlockingStub(channel);

    String token = System.getenv("RELAY_TOKEN");
    if (token != null && !token.isEmpty()) {
      Metadata headers = new Metadata();
      Metadata.Key<String> authorization =
          Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
      headers.put(authorization, "Bearer " + token);
      stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
    }

    // Ctrl-C: close the channel, which ends the stream; unacknowledged deliveries come back later.
    Runtime.getRuntime().addShutdownHook(new Thread(channel::shutdownNow));

    int code;
    try {
      code = new GroupConsumer(stub, opts).run();
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(code);
  }

  /** Subscribes, and re-subscribes after retryable stream errors, until --max or --timeout. */
  int run() throws InterruptedException {
    SubscribeRequest request =
        SubscribeRequest.newBuilder()
            .setGroup(opts.group)
            .setConsumer(opts.consumer)
            .addAllSources(opts.sources)
            // Where a group that does not exist yet starts. An existing group always continues
            // from its own position: its pending deliveries first, then what it has not seen.
            .setStart(StartPosition.START_POSITION_EARLIEST)
            .setAckDeadline(Duration.newBuilder().setSeconds(opts.ackDeadlineSeconds))
            // Deliveries that are ready together (a backlog, a burst) come up to 64 per message
            // as a DeliveryBatch: fewer, larger messages cost both sides less. A delivery that
            // is alone still comes at once, as a plain Delivery.
            .setMaxBatch(64)
            .build();

    long backoff = BACKOFF_INITIAL_MILLIS;
    while (true) {
      String why;
      try {
        if (subscribeOnce(request)) {
          log("processed %d event(s), done", processed);
          return EXIT_OK;
        }
        why = "stream ended by the relay"; // e.g. it is shutting down
      } catch (StatusRuntimeException e) {
        if (timedOut()) {
          return timeout();
        }
        Status.Code code = e.getStatus().getCode();
        if (code != Status.Code.UNAVAILABLE && code != Status.Code.RESOURCE_EXHAUSTED) {
          // INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND...: retrying
          // won't help.
          log("subscribe failed: %s", describe(e.getStatus()));
          return EXIT_ERROR;
        }
        // UNAVAILABLE: relay down or restarting. RESOURCE_EXHAUSTED: this stream fell behind
        // or hit a limit. Either way the group's position is safe in the relay.
        why = "stream error " + describe(e.getStatus());
      }
      // Reconnect with exponential backoff and jitter, so that many consumers do not all come
      // back at the same instant. A stream that received something was healthy: start over.
      if (streamReceived) {
        backoff = BACKOFF_INITIAL_MILLIS;
      }
      long sleep = ThreadLocalRandom.current().nextLong(backoff / 2, backoff + 1);
      if (deadline != null) {
        sleep = Math.max(0, Math.min(sleep, deadline.timeRemaining(TimeUnit.MILLISECONDS)));
      }
      log("%s; reconnecting in %dms", why, sleep);
      Thread.sleep(sleep);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MILLIS);
    }
  }

  private int timeout() {
    log("timeout: processed %d of %d event(s) in %ds", processed, opts.max, opts.timeoutSeconds);
    return EXIT_TIMEOUT;
  }

  /**
   * Runs one Subscribe stream. Returns true once --max events were processed, false if the relay
   * ended the stream; throws StatusRuntimeException on a stream error.
   */
  private boolean subscribeOnce(SubscribeRequest request) throws StatusRuntimeException {
    // The blocking iterator has no close(): run the stream in a cancellable context and cancel
    // it when we stop reading, so the relay sees the stream end at once.
    Context.CancellableContext streamContext = Context.current().withCancellation();
    try {
      return streamContext.call(() -> consume(request));
    } catch (StatusRuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw Status.INTERNAL.withCause(e).withDescription(e.toString()).asRuntimeException();
    } finally {
      streamContext.cancel(null);
    }
  }

  private boolean consume(SubscribeRequest request) {
    EventServiceGrpc.EventServiceBlockingStub s =
        deadline != null ? stub.withDeadline(deadline) : stub;
    Iterator<SubscribeResponse> stream = s.subscribe(request);
    streamReceived = false;
    log("subscribing to %s as group=%s consumer=%s", opts.addr, opts.group, opts.consumer);
    while (stream.hasNext()) {
      SubscribeResponse msg = stream.next();
      streamReceived = true;
      List<Delivery> deliveries;
      switch (msg.getKindCase()) {
        case DELIVERY:
          deliveries = List.of(msg.getDelivery());
          break;
        case BATCH: // max_batch: several deliveries, in order
          deliveries = msg.getBatch().getDeliveriesList();
          log("a batch of %d deliveries", deliveries.size());
          break;
        default:
          continue; // Heartbeat: keeps a quiet stream alive; a group consumer needs nothing from it.
      }
      for (Delivery delivery : deliveries) {
        // Past --max, the rest of a batch stays unacknowledged: the relay redelivers it after
        // the ack deadline (to this member first when it comes back).
        process(delivery);
        if (!opts.noAck) {
          acknowledge(delivery);
        }
        processed++;
        if (opts.max > 0 && processed >= opts.max) {
          return true;
        }
      }
    }
    return false;
  }

  /** The application's work. Here: print the event on one line. */
  private void process(Delivery delivery) {
    Event e = delivery.getEvent();
    String data = e.getData().toStringUtf8().replace("\r", "\\r").replace("\n", "\\n");
    OUT.printf(
        "event %s %s %s attempt=%d data=%s%n",
        e.getSource(), e.getId(), e.getType(), delivery.getDeliveryAttempt(), data);
  }

  /**
   * Acknowledges one delivery after it was processed. A failed or late acknowledgement is not
   * fatal: the relay redelivers the event after the ack deadline, which idempotent processing
   * absorbs. (A busy consumer can batch: AcknowledgeRequest takes many ack ids.)
   */
  private void acknowledge(Delivery delivery) {
    try {
      AcknowledgeResponse resp =
          stub.withDeadlineAfter(ACK_TIMEOUT_SECONDS, TimeUnit.SECONDS)
              .acknowledge(AcknowledgeRequest.newBuilder().addAckIds(delivery.getAckId()).build());
      if (resp.getUnknownAckIdsCount() > 0) {
        log("ack of %s/%s not applied (ack deadline passed or already acked);"
                + " it may be redelivered",
            delivery.getEvent().getSource(), delivery.getEvent().getId());
      }
    } catch (StatusRuntimeException e) {
      log("ack of %s/%s failed: %s; it will be redelivered",
          delivery.getEvent().getSource(), delivery.getEvent().getId(), describe(e.getStatus()));
    }
  }

  private boolean timedOut() {
    return deadline != null && deadline.isExpired();
  }

  /** "CODE: description", without the cause's stack trace that Status.toString() includes. */
  private static String describe(Status s) {
    String d = s.getDescription();
    return d == null ? s.getCode().toString() : s.getCode() + ": " + d;
  }

  private static void log(String format, Object... args) {
    System.err.println("GroupConsumer: " + String.format(format, args));
  }

  /** Command line and environment. */
  static final class Options {
    static final String USAGE =
        String.join(
            "\n",
            "Usage: GroupConsumer [options] GROUP CONSUMER [SOURCE...]",
            "",
            "  GROUP                 consumer group name",
            "  CONSUMER              this member's name within the group",
            "  SOURCE...             sources to read (none: every source the token may read)",
            "",
            "  --addr HOST:PORT      relay gRPC address"
                + " (default: $RELAY_GRPC_ADDR or localhost:9090)",
            "  --ack-deadline SECS   redeliver if not acknowledged within this time (default 30)",
            "  --max N               exit 0 after processing N events",
            "  --timeout SECS        exit 1 if --max was not reached in time",
            "  --no-ack              process without acknowledging (shows redelivery)",
            "",
            "  RELAY_TOKEN           optional bearer token (authorization: Bearer metadata)");

    String addr = envOr("RELAY_GRPC_ADDR", "localhost:9090");
    String group;
    String consumer;
    final List<String> sources = new ArrayList<>();
    long ackDeadlineSeconds = 30;
    long max;
    long timeoutSeconds;
    boolean noAck;
    boolean help;

    static Options parse(String[] args) {
      Options o = new Options();
      List<String> positional = new ArrayList<>();
      for (int i = 0; i < args.length; i++) {
        String a = args[i];
        switch (a) {
          case "-h":
          case "--help":
            o.help = true;
            return o;
          case "--addr":
            o.addr = value(args, ++i, a);
            break;
          case "--ack-deadline":
            o.ackDeadlineSeconds = positive(value(args, ++i, a), a);
            break;
          case "--max":
            o.max = positive(value(args, ++i, a), a);
            break;
          case "--timeout":
            o.timeoutSeconds = positive(value(args, ++i, a), a);
            break;
          case "--no-ack":
            o.noAck = true;
            break;
          default:
            if (a.startsWith("-")) {
              throw new IllegalArgumentException("unknown option " + a);
            }
            positional.add(a);
        }
      }
      if (positional.size() < 2) {
        throw new IllegalArgumentException("GROUP and CONSUMER are required");
      }
      o.group = positional.get(0);
      o.consumer = positional.get(1);
      o.sources.addAll(positional.subList(2, positional.size()));
      if (o.timeoutSeconds > 0 && o.max == 0) {
        throw new IllegalArgumentException("--timeout needs --max");
      }
      return o;
    }

    private static String value(String[] args, int i, String flag) {
      if (i >= args.length) {
        throw new IllegalArgumentException(flag + " needs a value");
      }
      return args[i];
    }

    private static long positive(String v, String flag) {
      try {
        long n = Long.parseLong(v);
        if (n > 0) {
          return n;
        }
      } catch (NumberFormatException ignored) {
        // reported below
      }
      throw new IllegalArgumentException(flag + " wants a positive integer, got " + v);
    }

    private static String envOr(String name, String fallback) {
      String v = System.getenv(name);
      return v == null || v.isEmpty() ? fallback : v;
    }
  }
}
